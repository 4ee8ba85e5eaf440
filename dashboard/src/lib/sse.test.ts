import { describe, expect, it } from 'vitest';
import { SseParser } from './sse';

describe('SseParser', () => {
	it('assembles events split across chunks', () => {
		const p = new SseParser();
		expect(p.push('event: invocation\nda')).toEqual([]);
		expect(p.push('ta: {"a":1}\nid: 7\n\n: keep-alive\n\ndata: two\ndata: lines\r\n\r\n')).toEqual([
			{ event: 'invocation', data: '{"a":1}', id: '7' },
			{ event: 'message', data: 'two\nlines', id: '7' }
		]);
	});

	it('ignores comments and blank events', () => {
		const p = new SseParser();
		expect(p.push(':hello\n\n\n')).toEqual([]);
	});

	it('refuses a line that never ends', () => {
		const p = new SseParser(16);
		expect(() => p.push('data: ' + 'x'.repeat(64))).toThrow(/too long/);
	});
});
