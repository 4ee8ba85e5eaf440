/**
 * The admin API's shapes, as the dashboard reads them. Fields that newer
 * servers add are optional here, so an older server still renders.
 */

export type Limits = Record<string, number>;

export interface Route {
	/** Upper-case; absent means any method. */
	method?: string | null;
	path: string;
}

export interface Script {
	id: string;
	name: string;
	version: number;
	source?: string;
	limits: Limits;
	effective_limits: Limits;
	created_at: string;
	updated_at: string;
	route?: Route | null;
	routes?: Route[] | null;
	/** Browser origins allowed to call the script (CORS); present on servers with routes. */
	cors_origins?: string[];
}

export const OUTCOMES = [
	'ok',
	'script_error',
	'compile_error',
	'timeout',
	'operation_limit',
	'memory_limit',
	'cpu_limit',
	'output_limit',
	'worker_crashed',
	'sandbox_violation',
	'overloaded'
] as const;
export type Outcome = (typeof OUTCOMES)[number];

export interface InvocationStats {
	queue_wait_us: number;
	wall_us: number;
	cpu_us: number;
	operations: number;
	peak_heap_bytes: number;
	response_bytes: number;
	log_bytes: number;
	worker_pid?: number | null;
	worker_invocations?: number;
	cache_hit?: boolean;
}

export interface InvocationRecord {
	id: string;
	script_id: string;
	script_version: number;
	route?: string | null;
	method: string;
	path: string;
	started_at: string;
	status: number;
	outcome: Outcome | string;
	error?: string | null;
	stats: InvocationStats;
	/** Present on the single-record endpoint; lists may leave it out. */
	logs?: string[];
	logs_truncated?: boolean;
	logs_shed?: number;
	client_addr?: string | null;
	/** In list pages: how many log lines the record has (the lines come with the single record). */
	log_lines?: number;
}

export interface InvocationPage {
	items: InvocationRecord[];
	/** Cursor for the next (older) page, when there is one. */
	next: string | null;
}

/** Percentiles of one measure. */
export interface Percentiles {
	p50: number | null;
	p95: number | null;
	p99: number | null;
}

export interface StatsBucket {
	/** Start of the bucket, ms since the epoch. */
	t: number;
	count: number;
	errors: number;
	wall_p50: number | null;
	wall_p99: number | null;
	cpu_p50: number | null;
	cpu_p99: number | null;
	mem_max: number | null;
}

export interface ScriptStats {
	window: string;
	count: number;
	errors: number;
	error_rate: number;
	wall_us: Percentiles;
	cpu_us: Percentiles;
	operations: Percentiles;
	peak_heap_bytes: Percentiles;
	last_invocation_at: string | null;
	bucket_seconds: number | null;
	buckets: StatsBucket[];
	/** Records per outcome kind. */
	outcomes: Record<string, number>;
	/** More records matched than the server read: numbers describe the newest. */
	sampled: boolean;
	/** What the record pipeline lost for this script since the server started. */
	records_dropped: number | null;
	log_lines_shed: number | null;
}

export interface PoolStatus {
	ready: boolean;
	mode: string;
	workers: number;
	busy: number;
	idle: number;
	queued: number;
	spawned_total: number;
	recycled_total: number;
	detail?: string | null;
	/** Extra counters a newer server reports (recycles by reason, …). */
	extra: Record<string, unknown>;
	/** Where the numbers came from. */
	source: 'pool' | 'readyz';
}

export interface SandboxLayer {
	name: string;
	status: string;
	detail: string | null;
}

export interface SandboxStatus {
	layers: SandboxLayer[];
	/** Workers are confined at all. */
	confined: boolean | null;
	/** Some layer is missing and the operator allowed it. */
	weak: boolean | null;
	/** What the kernel offers, flattened: `landlock.abi` → `7`. */
	kernel: [string, string][];
}

export interface Readiness {
	ready: boolean;
	problems: string[];
	executor: Partial<PoolStatus> | null;
}

export interface VersionInfo {
	version: number;
	content_hash?: string;
	created_at: string;
	/** Set on a version a rollback wrote: the version whose content it restored. */
	restored_from?: number | null;
	source?: string;
}
