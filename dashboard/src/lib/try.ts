/** Helpers for the try-it panel: example requests and reading responses. */
import gitPush from './fixtures/git-push-event.json?raw';
import payment from './fixtures/payment-succeeded-event.json?raw';
import slashCommand from './fixtures/slash-command.form?raw';
import type { InvocationStats } from './types';

export interface Example {
	id: string;
	label: string;
	method: string;
	query: string;
	contentType: string | null;
	body: string;
}

/** Realistic payloads (the project's shared fixtures) to start from. */
export const EXAMPLES: Example[] = [
	{ id: 'hello', label: 'GET with a query', method: 'GET', query: 'name=Ada', contentType: null, body: '' },
	{ id: 'git-push', label: 'Git push webhook (JSON)', method: 'POST', query: '', contentType: 'application/json', body: gitPush },
	{ id: 'payment', label: 'Payment succeeded (JSON)', method: 'POST', query: '', contentType: 'application/json', body: payment },
	{
		id: 'slash',
		label: 'Slash command (form)',
		method: 'POST',
		query: '',
		contentType: 'application/x-www-form-urlencoded',
		body: slashCommand.trimEnd()
	}
];

export const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];

/** Reads `X-PiCloud-Stats` (sent when the operator enables it). */
export function parseStatsHeader(value: string | null): { outcome: string | null; stats: Partial<InvocationStats> } | null {
	if (!value) return null;
	const fields = new Map<string, string>();
	for (const part of value.split(';').slice(0, 32)) {
		const eq = part.indexOf('=');
		if (eq > 0) fields.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
	}
	const n = (k: string) => {
		const v = fields.get(k);
		if (v === undefined || !/^\d+$/.test(v)) return undefined;
		return Number(v);
	};
	const stats: Partial<InvocationStats> = {
		wall_us: n('wall_us'),
		cpu_us: n('cpu_us'),
		queue_wait_us: n('queue_us'),
		operations: n('ops'),
		peak_heap_bytes: n('heap'),
		response_bytes: n('resp'),
		log_bytes: n('log'),
		worker_pid: n('pid') ?? null,
		worker_invocations: n('served'),
		cache_hit: fields.has('cache') ? fields.get('cache') === 'hit' : undefined
	};
	return { outcome: fields.get('outcome') ?? null, stats };
}

/** A body for display: JSON pretty-printed when it parses, else as is. */
export function prettyBody(contentType: string | null, body: string): { text: string; json: boolean } {
	const looksJson = (contentType ?? '').includes('json') || /^\s*[[{]/.test(body);
	if (looksJson && body.length <= 2 * 1024 * 1024) {
		try {
			return { text: JSON.stringify(JSON.parse(body), null, 2), json: true };
		} catch {
			// Not JSON after all.
		}
	}
	return { text: body, json: false };
}

/** Joins a path and a query typed by the user (with or without the `?`). */
export function withQuery(path: string, query: string): string {
	const q = query.trim().replace(/^\?/, '');
	return q ? `${path}?${q}` : path;
}
