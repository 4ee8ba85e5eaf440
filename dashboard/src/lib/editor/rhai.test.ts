import { describe, expect, it } from 'vitest';
import { StringStream } from '@codemirror/language';
import { rhaiParser, type RhaiState } from './rhai';

/** Tokenizes `source` line by line, as the editor does: [text, token] pairs. */
function tokens(source: string): [string, string | null][] {
	const state: RhaiState = rhaiParser.startState!(4);
	const out: [string, string | null][] = [];
	for (const line of source.split('\n')) {
		const stream = new StringStream(line, 4, 4);
		if (line === '' && rhaiParser.blankLine) rhaiParser.blankLine(state, 4);
		while (!stream.eol()) {
			const before = stream.pos;
			const style = rhaiParser.token(stream, state);
			expect(stream.pos, `tokenizer stalled in ${JSON.stringify(line)}`).toBeGreaterThan(before);
			const text = line.slice(stream.start, stream.pos);
			if (text.trim() !== '') out.push([text, style]);
			stream.start = stream.pos;
		}
	}
	return out;
}

function styleOf(source: string, text: string): string | null | undefined {
	return tokens(source).find(([t]) => t === text)?.[1];
}

describe('rhai tokenizer', () => {
	it('knows keywords, literals and comments', () => {
		const src = 'let x = 0x1F + 1_000.5e3; // done\nif x > 2 { return true; } /* a /* nested */ comment */ fn';
		expect(styleOf(src, 'let')).toBe('definitionKeyword');
		expect(styleOf(src, '0x1F')).toBe('number');
		expect(styleOf(src, '1_000.5e3')).toBe('number');
		expect(styleOf(src, '// done')).toBe('lineComment');
		expect(styleOf(src, 'if')).toBe('controlKeyword');
		expect(styleOf(src, 'return')).toBe('controlKeyword');
		expect(styleOf(src, 'true')).toBe('bool');
		expect(styleOf(src, '/* a /* nested */ comment */')).toBe('blockComment');
	});

	it('keeps nested block comments open across lines', () => {
		const t = tokens('/* outer /* inner */\nstill comment */ let');
		expect(t.map(([, s]) => s)).toEqual(['blockComment', 'blockComment', 'definitionKeyword']);
	});

	it('reads ranges without eating the dots as a fraction', () => {
		const t = tokens('for i in 0..10 {}');
		expect(t.filter(([, s]) => s === 'number').map(([x]) => x)).toEqual(['0', '10']);
	});

	it('highlights strings with escapes and line continuations', () => {
		expect(tokens('"a \\"quoted\\" word" + 1')[0]).toEqual(['"a \\"quoted\\" word"', 'string']);
		const t = tokens('let s = "first \\\nsecond"; let');
		expect(t.filter(([, s]) => s === 'string').map(([x]) => x)).toEqual(['"first \\', 'second"']);
		expect(t.at(-1)).toEqual(['let', 'definitionKeyword']);
	});

	it('switches in and out of back-tick interpolation, nested', () => {
		const t = tokens('`hi ${ name + `x${ #{a: 1}.a }` } end` + 2');
		expect(t[0]).toEqual(['`hi ', 'string.special']);
		expect(t[1]).toEqual(['${', 'meta']);
		expect(t[2]).toEqual(['name', 'variableName']);
		expect(styleOf('`a ${ #{k: 1}.k } b` + 2', 'k')).toBe('propertyName');
		expect(t.at(-1)).toEqual(['2', 'number']);
		expect(t.at(-3)).toEqual([' end`', 'string.special']);
	});

	it('keeps a template string open across lines', () => {
		const t = tokens('let s = `line one\nline ${two}\n`;');
		expect(t.filter(([, s]) => s === 'string.special').map(([x]) => x)).toEqual([
			'`line one',
			'line ',
			'`'
		]);
	});

	it('names function definitions, calls, builtins and properties', () => {
		const src = 'fn greet(who) { print(`hi`); helper(who) }\nrequest.query["name"]; #{ hello: name }';
		expect(styleOf(src, 'greet')).toBe('variableName.function.definition');
		expect(styleOf(src, 'print')).toBe('variableName.function.standard');
		expect(styleOf(src, 'helper')).toBe('variableName.function');
		expect(styleOf(src, 'request')).toBe('variableName.special');
		expect(styleOf(src, 'query')).toBe('propertyName');
		expect(styleOf(src, 'hello')).toBe('propertyName');
	});

	it('marks reserved words and stray characters as invalid, and never stalls', () => {
		expect(styleOf('var x = 1', 'var')).toBe('invalid');
		// Garbage and unterminated constructs still tokenize to the end.
		const garbage = '"unterminated\n`also ${ open\n/* never closed\n\u0000\u00ff \\ \'';
		expect(() => tokens(garbage)).not.toThrow();
		expect(() => tokens("'\\u{1F600}' 'x' '")).not.toThrow();
	});

	it('indents by open brackets', () => {
		const state = rhaiParser.startState!(4);
		const stream = new StringStream('if x { let y = [', 4, 4);
		while (!stream.eol()) {
			rhaiParser.token(stream, state);
			stream.start = stream.pos;
		}
		const cx = { unit: 4 } as Parameters<NonNullable<typeof rhaiParser.indent>>[2];
		expect(rhaiParser.indent!(state, '1,', cx)).toBe(8);
		expect(rhaiParser.indent!(state, ']', cx)).toBe(4);
	});
});

describe('rhai tokenizer on the project’s own scripts', () => {
	// The documented examples are valid Rhai: nothing in them may read as invalid.
	// The hostile fixtures are not all valid, but must tokenize without stalling.
	const examples = import.meta.glob('../../../../examples/*.rhai', { query: '?raw', import: 'default', eager: true });
	const hostile = import.meta.glob('../../../../tests/fixtures/hostile/*.rhai', { query: '?raw', import: 'default', eager: true });

	it('finds the scripts', () => {
		expect(Object.keys(examples).length).toBeGreaterThan(3);
		expect(Object.keys(hostile).length).toBeGreaterThan(10);
	});

	it('highlights every example without an invalid token', () => {
		for (const [file, source] of Object.entries(examples)) {
			const bad = tokens(source as string).filter(([, style]) => style === 'invalid');
			expect(bad, file).toEqual([]);
		}
	});

	it('tokenizes every hostile fixture to the end', () => {
		for (const [file, source] of Object.entries(hostile)) {
			expect(() => tokens(source as string), file).not.toThrow();
		}
	});
});
