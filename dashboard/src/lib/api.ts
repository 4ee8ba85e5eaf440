/**
 * The dashboard's only door to the server.
 *
 * Invariants:
 * - The admin token goes only to `/api/admin/*`, in an `Authorization`
 *   header; never to a script endpoint (a script could log it).
 * - A `401` from the admin API signs the tab out with a message: the token
 *   was rotated or mistyped, and every view should say so the same way.
 * - An endpoint this server does not have yet is an [`EndpointMissing`]
 *   error, so a view can say "not available on this server" instead of
 *   showing an error or made-up data.
 */
import { session } from './session.svelte';
import { normalizePage, normalizePool, normalizeSandbox, normalizeStats } from './normalize';
import type {
	InvocationPage,
	InvocationRecord,
	Limits,
	PoolStatus,
	Readiness,
	Route,
	SandboxStatus,
	Script,
	ScriptStats,
	VersionInfo
} from './types';

/** A refusal from the server, with its JSON error kind. */
export class ApiError extends Error {
	constructor(
		readonly status: number,
		readonly kind: string,
		message: string,
		/** For `compile_error`: where the compiler stopped (1-based). */
		readonly line: number | null = null,
		readonly column: number | null = null
	) {
		super(message);
		this.name = 'ApiError';
	}
}

/** The server answered, but it has no such endpoint (an older version). */
export class EndpointMissing extends Error {
	constructor(readonly path: string) {
		super(`${path} is not available on this server`);
		this.name = 'EndpointMissing';
	}
}

/** The server could not be reached at all. */
export class NetworkError extends Error {
	constructor(cause: unknown) {
		super('The server could not be reached. Is picloud running?', { cause });
		this.name = 'NetworkError';
	}
}

/** Every way a request can fail, as one short sentence for the UI. */
export function describeError(e: unknown): string {
	if (e instanceof ApiError || e instanceof EndpointMissing || e instanceof NetworkError) {
		return e.message;
	}
	if (e instanceof DOMException && e.name === 'AbortError') return 'Cancelled.';
	return e instanceof Error ? e.message : String(e);
}

const UNAUTHORIZED_NOTICE = 'The server did not accept your token any more. Sign in again.';

interface RequestOptions {
	body?: unknown;
	signal?: AbortSignal;
	/** Use this token instead of the session's (sign-in checks it first). */
	token?: string;
	/** Do not sign out on 401 (the sign-in form reports it itself). */
	keepSessionOn401?: boolean;
}

async function send(method: string, path: string, opts: RequestOptions = {}): Promise<Response> {
	const token = opts.token ?? session.token;
	const headers: Record<string, string> = { accept: 'application/json' };
	if (token) headers.authorization = `Bearer ${token}`;
	if (opts.body !== undefined) headers['content-type'] = 'application/json';
	let response: Response;
	try {
		response = await fetch(path, {
			method,
			headers,
			body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
			signal: opts.signal,
			cache: 'no-store',
			credentials: 'omit'
		});
	} catch (e) {
		if (e instanceof DOMException && e.name === 'AbortError') throw e;
		throw new NetworkError(e);
	}
	if (response.ok) return response;
	throw await errorFrom(response, path, opts);
}

async function errorFrom(response: Response, path: string, opts: RequestOptions): Promise<Error> {
	let body: { error?: unknown; message?: unknown; line?: unknown; column?: unknown } = {};
	try {
		body = (await response.json()) as typeof body;
	} catch {
		// Not JSON: a proxy's error page, or an empty body.
	}
	const kind = typeof body.error === 'string' ? body.error : `http_${response.status}`;
	const message =
		typeof body.message === 'string' && body.message !== ''
			? body.message
			: `The server answered ${response.status} ${response.statusText}`.trim();
	if (response.status === 401) {
		if (!opts.keepSessionOn401) session.signOut(UNAUTHORIZED_NOTICE);
		return new ApiError(401, 'unauthorized', 'That token was not accepted.');
	}
	if (isMissingEndpoint(response.status, message)) return new EndpointMissing(path);
	const position = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
	return new ApiError(response.status, kind, message, position(body.line), position(body.column));
}

/** The admin router's and the dashboard's answer for a path nobody serves. */
export function isMissingEndpoint(status: number, message: string): boolean {
	return (status === 404 && /no such (admin )?endpoint/i.test(message)) || status === 405;
}

async function json<T>(method: string, path: string, opts?: RequestOptions): Promise<T> {
	const response = await send(method, path, opts);
	return (await response.json()) as T;
}

const enc = encodeURIComponent;

// ---- Sign-in ---------------------------------------------------------------

/** Checks a token against the admin API without changing the session. */
export async function verifyToken(token: string): Promise<void> {
	await send('GET', '/api/admin/scripts', { token, keepSessionOn401: true });
}

// ---- Scripts ---------------------------------------------------------------

export function listScripts(signal?: AbortSignal): Promise<Script[]> {
	return json('GET', '/api/admin/scripts', { signal });
}

export function getScript(id: string, signal?: AbortSignal): Promise<Script> {
	return json('GET', `/api/admin/scripts/${enc(id)}`, { signal });
}

export interface NewScript {
	name: string;
	source: string;
	limits?: Limits;
	route?: Route;
}

export function createScript(script: NewScript): Promise<Script> {
	return json('POST', '/api/admin/scripts', { body: script });
}

export interface ScriptChange {
	source?: string;
	limits?: Limits;
	/** `null` removes the route. */
	route?: Route | null;
	cors_origins?: string[];
}

export function updateScript(id: string, change: ScriptChange): Promise<Script> {
	return json('PUT', `/api/admin/scripts/${enc(id)}`, { body: change });
}

export async function deleteScript(id: string): Promise<void> {
	await send('DELETE', `/api/admin/scripts/${enc(id)}`);
}

export function listVersions(id: string, signal?: AbortSignal): Promise<VersionInfo[]> {
	return json<unknown>('GET', `/api/admin/scripts/${enc(id)}/versions`, { signal }).then((raw) => {
		const list = Array.isArray(raw) ? raw : ((raw as { versions?: unknown })?.versions ?? []);
		return (Array.isArray(list) ? list : []) as VersionInfo[];
	});
}

export function getVersion(id: string, version: number, signal?: AbortSignal): Promise<VersionInfo> {
	return json('GET', `/api/admin/scripts/${enc(id)}/versions/${version}`, { signal });
}

export function rollback(id: string, version: number): Promise<Script> {
	return json('POST', `/api/admin/scripts/${enc(id)}/rollback`, { body: { version } });
}

// ---- Invocations -----------------------------------------------------------

export interface InvocationQuery {
	limit?: number;
	before?: string | null;
	outcome?: string | null;
}

export async function listInvocations(
	scriptId: string,
	query: InvocationQuery,
	signal?: AbortSignal
): Promise<InvocationPage> {
	const params = new URLSearchParams();
	if (query.limit) params.set('limit', String(query.limit));
	if (query.before) params.set('before', query.before);
	if (query.outcome) params.set('outcome', query.outcome);
	const raw = await json<unknown>(
		'GET',
		`/api/admin/scripts/${enc(scriptId)}/invocations?${params}`,
		{ signal }
	);
	return normalizePage(raw, query.limit ?? 0);
}

export function getInvocation(id: string, signal?: AbortSignal): Promise<InvocationRecord> {
	return json('GET', `/api/admin/invocations/${enc(id)}`, { signal });
}

export async function scriptStats(
	scriptId: string,
	window: string,
	signal?: AbortSignal
): Promise<ScriptStats> {
	const raw = await json<unknown>(
		'GET',
		`/api/admin/scripts/${enc(scriptId)}/stats?window=${enc(window)}`,
		{ signal }
	);
	return normalizeStats(raw, window);
}

/** Opens the live stream of a script's new invocation records. */
export async function openInvocationStream(scriptId: string, signal: AbortSignal): Promise<Response> {
	const token = session.token;
	let response: Response;
	try {
		response = await fetch(`/api/admin/scripts/${enc(scriptId)}/invocations/stream`, {
			headers: { accept: 'text/event-stream', ...(token ? { authorization: `Bearer ${token}` } : {}) },
			signal,
			cache: 'no-store',
			credentials: 'omit'
		});
	} catch (e) {
		if (e instanceof DOMException && e.name === 'AbortError') throw e;
		throw new NetworkError(e);
	}
	if (!response.ok) throw await errorFrom(response, '/api/admin/…/invocations/stream', {});
	return response;
}

// ---- System ----------------------------------------------------------------

export async function readiness(signal?: AbortSignal): Promise<Readiness> {
	let response: Response;
	try {
		response = await fetch('/readyz', { signal, cache: 'no-store', credentials: 'omit' });
	} catch (e) {
		if (e instanceof DOMException && e.name === 'AbortError') throw e;
		throw new NetworkError(e);
	}
	// Where the admin API has an address of its own (PICLOUD_ADMIN_BIND), the
	// data plane's /readyz is not here: this path answers with the app's page.
	if (!(response.headers.get('content-type') ?? '').includes('json')) throw new EndpointMissing('/readyz');
	// 503 still carries the report.
	const body = (await response.json().catch(() => ({}))) as Partial<Readiness>;
	return {
		ready: body.ready === true,
		problems: Array.isArray(body.problems) ? body.problems.map(String) : [],
		executor: body.executor ?? null
	};
}

/**
 * Workers busy and idle, recycles: from `/api/admin/pool`, or, on a server
 * without it, the same executor status that `/readyz` reports.
 */
export async function poolStatus(signal?: AbortSignal): Promise<PoolStatus> {
	try {
		return normalizePool(await json<unknown>('GET', '/api/admin/pool', { signal }), 'pool');
	} catch (e) {
		if (!(e instanceof EndpointMissing)) throw e;
	}
	const ready = await readiness(signal);
	if (!ready.executor) throw new EndpointMissing('/api/admin/pool');
	return normalizePool(ready.executor, 'readyz');
}

export async function sandboxStatus(signal?: AbortSignal): Promise<SandboxStatus> {
	return normalizeSandbox(await json<unknown>('GET', '/api/admin/sandbox', { signal }));
}

// ---- Invoking a script (no token!) ----------------------------------------

export interface TryRequest {
	method: string;
	/** Path and query, e.g. `/api/execute/<id>?name=Ada`. */
	url: string;
	headers: [string, string][];
	body: string;
}

export interface TryResponse {
	status: number;
	statusText: string;
	headers: [string, string][];
	body: string;
	/** The body was longer than the dashboard shows. */
	truncated: boolean;
	bodyBytes: number;
	elapsedMs: number;
	invocationId: string | null;
}

/** What the try-it panel shows of a response body at most. */
export const MAX_SHOWN_BODY = 512 * 1024;

/**
 * Sends a request to a script exactly as an outside caller would: no admin
 * token, no cookies. The body is read up to [`MAX_SHOWN_BODY`] bytes.
 */
export async function invoke(req: TryRequest, signal?: AbortSignal): Promise<TryResponse> {
	const started = performance.now();
	let response: Response;
	try {
		response = await fetch(req.url, {
			method: req.method,
			headers: req.headers.filter(([k]) => k.trim() !== ''),
			body: req.method === 'GET' || req.method === 'HEAD' ? undefined : req.body,
			signal,
			cache: 'no-store',
			credentials: 'omit',
			redirect: 'manual'
		});
	} catch (e) {
		if (e instanceof DOMException && e.name === 'AbortError') throw e;
		throw new NetworkError(e);
	}
	const { text, total, truncated } = await readCapped(response, MAX_SHOWN_BODY);
	// `redirect: 'manual'` hides a redirect's status and headers from scripts in the page.
	const redirect = response.type === 'opaqueredirect';
	return {
		status: response.status,
		statusText: redirect ? 'redirect (not followed)' : response.statusText,
		headers: [...response.headers.entries()],
		body: text,
		truncated,
		bodyBytes: total,
		elapsedMs: performance.now() - started,
		invocationId: response.headers.get('x-picloud-invocation-id')
	};
}

async function readCapped(
	response: Response,
	cap: number
): Promise<{ text: string; total: number; truncated: boolean }> {
	if (!response.body) return { text: '', total: 0, truncated: false };
	const reader = response.body.getReader();
	const chunks: Uint8Array[] = [];
	let kept = 0;
	let total = 0;
	for (;;) {
		const { value, done } = await reader.read();
		if (done) break;
		total += value.byteLength;
		if (kept < cap) {
			const part = value.subarray(0, cap - kept);
			chunks.push(part);
			kept += part.byteLength;
		}
	}
	const joined = new Uint8Array(kept);
	let at = 0;
	for (const c of chunks) {
		joined.set(c, at);
		at += c.byteLength;
	}
	return { text: new TextDecoder().decode(joined), total, truncated: total > kept };
}
