import { describe, expect, it } from 'vitest';
import { normalizePage, normalizePool, normalizeSandbox, normalizeStats } from './normalize';

describe('normalizeStats', () => {
	it('reads counts, percentiles and sorted buckets', () => {
		const s = normalizeStats(
			{
				count: 10,
				errors: 2,
				wall_us: { p50: 100, p95: 200, p99: 300 },
				buckets: [
					{ start: '2026-01-01T00:01:00Z', count: 4, errors: 1, wall_us_p50: 90 },
					{ start: '2026-01-01T00:00:00Z', count: 6, errors: 1, wall_us_p50: 110 }
				]
			},
			'1h'
		);
		expect(s.error_rate).toBeCloseTo(0.2);
		expect(s.wall_us).toEqual({ p50: 100, p95: 200, p99: 300 });
		expect(s.cpu_us).toEqual({ p50: null, p95: null, p99: null });
		expect(s.buckets.map((b) => b.count)).toEqual([6, 4]);
		expect(s.buckets[0]?.wall_p50).toBe(110);
		expect(s.window).toBe('1h');
	});

	it('reads the manager-core stats shape, with gaps for empty buckets', () => {
		const s = normalizeStats(
			{
				from: '2026-01-01T00:00:00Z',
				to: '2026-01-01T01:00:00Z',
				count: 3,
				errors: 1,
				error_rate: 1 / 3,
				outcomes: { ok: 2, timeout: 1 },
				wall_us: { p50: 800, p95: 900, p99: 950, max: 990, mean: 820.5 },
				cpu_us: { p50: 600, p95: 700, p99: 750, max: 760, mean: 610 },
				operations: { p50: 10, p95: 20, p99: 30, max: 40, mean: 12 },
				peak_heap_bytes: { p50: 1024, p95: 2048, p99: 4096, max: 8192, mean: 1500 },
				sampled: false,
				bucket_seconds: 60,
				buckets: [
					{ start: '2026-01-01T00:00:00Z', count: 0, errors: 0, wall_us: { p50: 0, p95: 0, p99: 0, max: 0, mean: 0 }, cpu_us: { p50: 0, p95: 0, p99: 0, max: 0, mean: 0 }, peak_heap_bytes_max: 0 },
					{ start: '2026-01-01T00:01:00Z', count: 3, errors: 1, wall_us: { p50: 800, p95: 900, p99: 950, max: 990, mean: 1 }, cpu_us: { p50: 600, p95: 700, p99: 750, max: 760, mean: 1 }, peak_heap_bytes_max: 8192 }
				],
				records: { records_dropped: 0, log_lines_shed: 4 }
			},
			'1h'
		);
		expect(s.outcomes).toEqual({ ok: 2, timeout: 1 });
		expect(s.bucket_seconds).toBe(60);
		expect(s.buckets[0]).toMatchObject({ count: 0, wall_p50: null, mem_max: null });
		expect(s.buckets[1]).toMatchObject({ count: 3, errors: 1, wall_p50: 800, wall_p99: 950, cpu_p50: 600, cpu_p99: 750, mem_max: 8192 });
		expect(s.log_lines_shed).toBe(4);
		expect(s.records_dropped).toBe(0);
	});

	it('survives garbage without inventing numbers', () => {
		const s = normalizeStats({ count: 'lots', buckets: [{ nope: 1 }, null, 5] }, '1h');
		expect(s.count).toBe(0);
		expect(s.buckets).toEqual([]);
		expect(normalizeStats(null, '6h').window).toBe('6h');
	});
});

describe('normalizePage', () => {
	it('reads the manager-core page shape', () => {
		const p = normalizePage({ invocations: [{ id: 'a', log_lines: 2 }], next_before: 'c2' }, 50);
		expect(p.items[0]?.log_lines).toBe(2);
		expect(p.next).toBe('c2');
		expect(normalizePage({ invocations: [] }, 50).next).toBeNull();
	});

	it('takes a cursor from an object page', () => {
		const p = normalizePage({ items: [{ id: 'a' }], next_before: 'cursor-1' }, 50);
		expect(p.items).toHaveLength(1);
		expect(p.next).toBe('cursor-1');
	});

	it('pages a bare array from its oldest row only when it is full', () => {
		expect(normalizePage([{ id: 'a' }, { id: 'b' }], 2).next).toBe('b');
		expect(normalizePage([{ id: 'a' }], 2).next).toBeNull();
	});
});

describe('normalizePool and normalizeSandbox', () => {
	it('keeps unknown pool counters as extras', () => {
		const p = normalizePool({ ready: true, workers: 4, busy: 1, idle: 3, recycles_by_reason: { max_requests: 2 } }, 'pool');
		expect(p.workers).toBe(4);
		expect(p.extra).toEqual({ recycles_by_reason: { max_requests: 2 } });
	});

	it('reads the sandbox report picloud serves', () => {
		const s = normalizeSandbox({
			confined: true,
			weak: false,
			kernel: { arch: 'x86_64', landlock: { abi: 7, state: 'available' }, running_as_root: true },
			layers: [{ layer: 'seccomp', status: 'applied', detail: 'allow-list for x86_64' }]
		});
		expect(s.layers).toEqual([{ name: 'seccomp', status: 'applied', detail: 'allow-list for x86_64' }]);
		expect(s.confined).toBe(true);
		expect(s.weak).toBe(false);
		expect(s.kernel).toEqual([
			['arch', 'x86_64'],
			['landlock.abi', '7'],
			['landlock.state', 'available'],
			['running_as_root', 'true']
		]);
	});

	it('reads layers as a list or a map', () => {
		expect(normalizeSandbox({ layers: [{ name: 'seccomp', active: true }] }).layers).toEqual([
			{ name: 'seccomp', status: 'active', detail: null }
		]);
		expect(normalizeSandbox({ landlock: 'abi 7', seccomp: false }).layers).toEqual([
			{ name: 'landlock', status: 'abi 7', detail: null },
			{ name: 'seccomp', status: 'missing', detail: null }
		]);
	});
});
