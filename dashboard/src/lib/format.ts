/**
 * Human-readable numbers for a dense developer UI. Every function accepts
 * `null`/`undefined` (a missing value from an older server) and answers "—".
 */

const DASH = '—';

function missing(v: number | null | undefined): v is null | undefined {
	return v === null || v === undefined || !Number.isFinite(v);
}

/** Microseconds → "850 µs", "12.4 ms", "3.20 s". */
export function micros(us: number | null | undefined): string {
	if (missing(us)) return DASH;
	if (us < 1000) return `${Math.round(us)} µs`;
	if (us < 1_000_000) return `${trim(us / 1000)} ms`;
	return `${(us / 1_000_000).toFixed(2)} s`;
}

/** Bytes → "512 B", "1.5 KiB", "64 MiB". */
export function bytes(n: number | null | undefined): string {
	if (missing(n)) return DASH;
	const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
	let value = n;
	let unit = 0;
	while (Math.abs(value) >= 1024 && unit < units.length - 1) {
		value /= 1024;
		unit += 1;
	}
	return unit === 0 ? `${Math.round(value)} B` : `${trim(value)} ${units[unit]}`;
}

/** Large counts → "987", "12.3k", "4.5M". */
export function count(n: number | null | undefined): string {
	if (missing(n)) return DASH;
	const abs = Math.abs(n);
	if (abs < 1000) return String(Math.round(n));
	if (abs < 1_000_000) return `${trim(n / 1000)}k`;
	if (abs < 1_000_000_000) return `${trim(n / 1_000_000)}M`;
	return `${trim(n / 1_000_000_000)}G`;
}

/** A fraction (0..1) → "0%", "2.5%", "100%". */
export function percent(fraction: number | null | undefined): string {
	if (missing(fraction)) return DASH;
	const p = fraction * 100;
	if (p === 0) return '0%';
	if (p < 0.1) return '<0.1%';
	return `${p < 10 ? p.toFixed(1) : Math.round(p)}%`;
}

/** Three significant digits at most, without trailing zeros. */
function trim(v: number): string {
	const digits = Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 10 ? 1 : 2;
	return String(Number(v.toFixed(digits)));
}

/** "just now", "42 s ago", "5 min ago", "3 h ago", "2 d ago"; or a date. */
export function ago(iso: string | null | undefined, now: number = Date.now()): string {
	if (!iso) return DASH;
	const t = Date.parse(iso);
	if (Number.isNaN(t)) return DASH;
	const s = Math.round((now - t) / 1000);
	if (s < 5) return 'just now';
	if (s < 60) return `${s} s ago`;
	if (s < 3600) return `${Math.floor(s / 60)} min ago`;
	if (s < 86_400) return `${Math.floor(s / 3600)} h ago`;
	if (s < 30 * 86_400) return `${Math.floor(s / 86_400)} d ago`;
	return new Date(t).toISOString().slice(0, 10);
}

/** An ISO timestamp as local "YYYY-MM-DD HH:MM:SS.mmm". */
export function timestamp(iso: string | null | undefined): string {
	if (!iso) return DASH;
	const d = new Date(iso);
	if (Number.isNaN(d.getTime())) return DASH;
	const p = (n: number, w = 2) => String(n).padStart(w, '0');
	return (
		`${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ` +
		`${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`
	);
}

/** The first block of a UUID, enough to tell rows apart. */
export function shortId(id: string): string {
	return id.split('-')[0] ?? id;
}
