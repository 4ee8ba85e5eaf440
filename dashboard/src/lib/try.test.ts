import { describe, expect, it } from 'vitest';
import { EXAMPLES, parseStatsHeader, prettyBody, withQuery } from './try';

describe('try-it helpers', () => {
	it('parses the stats header the orchestrator sends', () => {
		const p = parseStatsHeader('outcome=ok;wall_us=812;cpu_us=640;queue_us=12;ops=1530;heap=20480;resp=17;log=0;cache=hit;pid=4242;served=3');
		expect(p?.outcome).toBe('ok');
		expect(p?.stats).toMatchObject({ wall_us: 812, operations: 1530, peak_heap_bytes: 20480, cache_hit: true, worker_pid: 4242 });
		expect(parseStatsHeader(null)).toBeNull();
		expect(parseStatsHeader('wall_us=-1;ops=lots')?.stats.wall_us).toBeUndefined();
	});

	it('pretty-prints JSON and leaves the rest alone', () => {
		expect(prettyBody('application/json', '{"a":[1]}')).toEqual({ text: '{\n  "a": [\n    1\n  ]\n}', json: true });
		expect(prettyBody('text/plain', 'hello')).toEqual({ text: 'hello', json: false });
		expect(prettyBody('application/json', '{broken')).toEqual({ text: '{broken', json: false });
	});

	it('joins queries', () => {
		expect(withQuery('/api/execute/x', '?a=1')).toBe('/api/execute/x?a=1');
		expect(withQuery('/api/execute/x', '  ')).toBe('/api/execute/x');
	});

	it('ships the shared fixtures as examples', () => {
		const push = EXAMPLES.find((e) => e.id === 'git-push');
		expect(() => JSON.parse(push?.body ?? '')).not.toThrow();
		expect(EXAMPLES.find((e) => e.id === 'slash')?.body).toContain('command=%2Fdeploy');
	});
});
