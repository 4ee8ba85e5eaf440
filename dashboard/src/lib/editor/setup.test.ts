import { describe, expect, it } from 'vitest';
import { Text } from '@codemirror/state';
import { problemRange } from './setup';

const doc = Text.of(['let x = 1;', 'let y = foo bar;', '', 'end']);

describe('problemRange', () => {
	it('marks the word at a 1-based line and column', () => {
		// Line 2, column 13 is the `b` of `bar`.
		const r = problemRange(doc, { message: 'x', line: 2, column: 13 });
		expect(doc.sliceString(r.from, r.to)).toBe('bar');
	});

	it('marks one character when not on a word', () => {
		const r = problemRange(doc, { message: 'x', line: 1, column: 7 });
		expect(doc.sliceString(r.from, r.to)).toBe('=');
	});

	it('marks the last character at the end of a line', () => {
		const r = problemRange(doc, { message: 'x', line: 1, column: 99 });
		expect(doc.sliceString(r.from, r.to)).toBe(';');
	});

	it('clamps lines outside the document and handles a missing column', () => {
		const r = problemRange(doc, { message: 'x', line: 40, column: 1 });
		expect(doc.sliceString(r.from, r.to)).toBe('end');
		const whole = problemRange(doc, { message: 'x', line: 2, column: null });
		expect(doc.sliceString(whole.from, whole.to)).toBe('let y = foo bar;');
		const empty = problemRange(doc, { message: 'x', line: 3, column: null });
		expect(empty.to).toBeGreaterThan(empty.from);
		expect(problemRange(Text.of(['']), { message: 'x', line: 1, column: 1 })).toEqual({ from: 0, to: 0 });
		expect(problemRange(doc, { message: 'x', line: null, column: 0 }).from).toBe(0);
	});
});
