/** Colours and axis styling shared by every chart. */
import type uPlot from 'uplot';

export const COLORS = {
	accent: '#7c9cff',
	ok: '#3ecf8e',
	err: '#f4677d',
	warn: '#f5b445',
	info: '#5ec4ff',
	violet: '#c792ea',
	grid: 'rgba(255,255,255,0.06)',
	axis: '#7d869b'
};

export function axis(values?: uPlot.Axis['values'], extra: Partial<uPlot.Axis> = {}): uPlot.Axis {
	return {
		stroke: COLORS.axis,
		grid: { stroke: COLORS.grid, width: 1 },
		ticks: { stroke: COLORS.grid, width: 1, size: 4 },
		font: '11px system-ui, sans-serif',
		gap: 4,
		...(values ? { values } : {}),
		...extra
	};
}

/** Points only while there are few of them: a lone value between gaps stays visible. */
export function sparsePoints(u: uPlot, seriesIdx: number): boolean {
	let n = 0;
	for (const v of u.data[seriesIdx] ?? []) if (v != null && ++n > 90) return false;
	return true;
}

export interface SeriesSpec {
	label: string;
	color: string;
	/** Bars instead of a line. */
	bars?: boolean;
	fill?: boolean;
}
