/**
 * Turns the admin API's JSON into the dashboard's types.
 *
 * Invariants: never throws on a well-formed JSON value of the wrong shape;
 * a missing or mistyped number becomes `null` (shown as "—"), never a made-up
 * value; arrays are capped so a huge answer cannot freeze the page.
 */
import type {
	InvocationPage,
	InvocationRecord,
	Percentiles,
	PoolStatus,
	SandboxLayer,
	SandboxStatus,
	ScriptStats,
	StatsBucket
} from './types';

type Obj = Record<string, unknown>;

const MAX_ROWS = 1000;
const MAX_BUCKETS = 2000;

function obj(v: unknown): Obj {
	return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Obj) : {};
}

function num(v: unknown): number | null {
	return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

/** The first of `keys` that holds a number. */
function firstNum(o: Obj, ...keys: string[]): number | null {
	for (const k of keys) {
		const n = num(o[k]);
		if (n !== null) return n;
	}
	return null;
}

function str(v: unknown): string | null {
	return typeof v === 'string' ? v : null;
}

function percentiles(v: unknown): Percentiles {
	const o = obj(v);
	return { p50: num(o.p50), p95: num(o.p95), p99: num(o.p99) };
}

/** Milliseconds since the epoch from an ISO string, seconds or milliseconds. */
function time(v: unknown): number | null {
	if (typeof v === 'string') {
		const t = Date.parse(v);
		return Number.isNaN(t) ? null : t;
	}
	const n = num(v);
	if (n === null) return null;
	return n < 1e11 ? n * 1000 : n;
}

/** A page of invocation records: a bare array or `{items|invocations, next|next_before}`. */
export function normalizePage(raw: unknown, limit: number): InvocationPage {
	const o = obj(raw);
	const list = Array.isArray(raw) ? raw : (o.items ?? o.invocations ?? o.records);
	const items = (Array.isArray(list) ? list : []).slice(0, MAX_ROWS) as InvocationRecord[];
	let next = str(o.next_before) ?? str(o.next) ?? str(o.before) ?? str(o.cursor);
	if (next === null && Array.isArray(raw) && limit > 0 && items.length >= limit) {
		// A bare array has no cursor: page on from the oldest row shown.
		next = items[items.length - 1]?.id ?? null;
	}
	return { items, next };
}

function bucket(v: unknown): StatsBucket | null {
	const o = obj(v);
	const t = time(o.t ?? o.start ?? o.started_at ?? o.ts ?? o.bucket ?? o.time);
	if (t === null) return null;
	const wall = obj(o.wall_us);
	const cpu = obj(o.cpu_us);
	const mem = obj(o.peak_heap_bytes);
	const count = firstNum(o, 'count', 'invocations') ?? 0;
	if (count === 0) {
		// An empty slice has no latency: a gap in the line, not a zero.
		return { t, count, errors: 0, wall_p50: null, wall_p99: null, cpu_p50: null, cpu_p99: null, mem_max: null };
	}
	return {
		t,
		count,
		errors: firstNum(o, 'errors', 'error_count') ?? 0,
		wall_p50: firstNum(o, 'wall_p50', 'wall_us_p50', 'p50_wall_us') ?? num(wall.p50),
		wall_p99: firstNum(o, 'wall_p99', 'wall_us_p99', 'p99_wall_us') ?? num(wall.p99),
		cpu_p50: firstNum(o, 'cpu_p50', 'cpu_us_p50', 'p50_cpu_us') ?? num(cpu.p50),
		cpu_p99: firstNum(o, 'cpu_p99', 'cpu_us_p99', 'p99_cpu_us') ?? num(cpu.p99),
		mem_max:
			firstNum(o, 'mem_max', 'peak_heap_bytes_max', 'max_peak_heap_bytes', 'peak_heap_max') ??
			num(mem.max) ??
			num(mem.p99)
	};
}

export function normalizeStats(raw: unknown, window: string): ScriptStats {
	const o = obj(raw);
	const count = firstNum(o, 'count', 'invocations', 'total') ?? 0;
	const errors = firstNum(o, 'errors', 'error_count') ?? 0;
	const rawBuckets = o.buckets ?? o.series ?? o.timeseries;
	const buckets = (Array.isArray(rawBuckets) ? rawBuckets : [])
		.slice(0, MAX_BUCKETS)
		.map(bucket)
		.filter((b): b is StatsBucket => b !== null)
		.sort((a, b) => a.t - b.t);
	return {
		window: str(o.window) ?? window,
		count,
		errors,
		error_rate: num(o.error_rate) ?? (count > 0 ? errors / count : 0),
		wall_us: percentiles(o.wall_us ?? o.wall),
		cpu_us: percentiles(o.cpu_us ?? o.cpu),
		operations: percentiles(o.operations),
		peak_heap_bytes: percentiles(o.peak_heap_bytes ?? o.memory),
		last_invocation_at: str(o.last_invocation_at) ?? str(o.last_started_at) ?? str(o.last_at),
		bucket_seconds: firstNum(o, 'bucket_seconds', 'bucket_secs'),
		buckets,
		outcomes: Object.fromEntries(
			Object.entries(obj(o.outcomes))
				.slice(0, 64)
				.filter((e): e is [string, number] => num(e[1]) !== null)
		),
		sampled: o.sampled === true,
		records_dropped: num(obj(o.records).records_dropped),
		log_lines_shed: num(obj(o.records).log_lines_shed)
	};
}

export function normalizePool(raw: unknown, source: PoolStatus['source']): PoolStatus {
	const o = obj(raw);
	const known = new Set([
		'ready', 'mode', 'workers', 'busy', 'idle', 'queued', 'spawned_total', 'recycled_total',
		'detail'
	]);
	const extra: Record<string, unknown> = {};
	for (const [k, v] of Object.entries(o)) if (!known.has(k)) extra[k] = v;
	return {
		ready: o.ready === true,
		mode: str(o.mode) ?? '—',
		workers: num(o.workers) ?? 0,
		busy: num(o.busy) ?? 0,
		idle: num(o.idle) ?? 0,
		queued: num(o.queued) ?? 0,
		spawned_total: num(o.spawned_total) ?? 0,
		recycled_total: num(o.recycled_total) ?? 0,
		detail: str(o.detail),
		extra,
		source
	};
}

/** Sandbox layers: `[{name, status|active|enabled, detail}]` or `{layers: …}` or a name → status map. */
export function normalizeSandbox(raw: unknown): SandboxStatus {
	const o = obj(raw);
	const list = Array.isArray(raw) ? raw : (o.layers ?? o.checks);
	let layers: SandboxLayer[] = [];
	if (Array.isArray(list)) {
		layers = list.slice(0, 100).map((v) => {
			const l = obj(v);
			const flag = l.active ?? l.enabled ?? l.ok ?? l.in_force ?? l.applied;
			const status =
				str(l.status) ?? str(l.state) ?? (typeof flag === 'boolean' ? (flag ? 'active' : 'missing') : 'unknown');
			return {
				name: str(l.name) ?? str(l.layer) ?? '?',
				status,
				detail: str(l.detail) ?? str(l.message) ?? str(l.note) ?? null
			};
		});
	} else {
		const map = obj(list ?? raw);
		layers = Object.entries(map)
			.slice(0, 100)
			.map(([name, v]) => ({
				name,
				status: typeof v === 'boolean' ? (v ? 'active' : 'missing') : (str(v) ?? str(obj(v).status) ?? 'unknown'),
				detail: str(obj(v).detail)
			}));
	}
	const kernel: [string, string][] = [];
	const flatten = (prefix: string, v: unknown, depth: number) => {
		if (kernel.length >= 40) return;
		if (v !== null && typeof v === 'object' && !Array.isArray(v) && depth < 3) {
			for (const [k, x] of Object.entries(v)) flatten(prefix ? `${prefix}.${k}` : k, x, depth + 1);
		} else if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') {
			kernel.push([prefix, String(v)]);
		}
	};
	flatten('', o.kernel, 0);
	const flag = (v: unknown) => (typeof v === 'boolean' ? v : null);
	return { layers, confined: flag(o.confined), weak: flag(o.weak), kernel };
}
