/**
 * Rhai for CodeMirror 6: a stream tokenizer.
 *
 * Invariants: the tokenizer never throws and always advances the stream, so
 * any text (including half-typed or hostile source) highlights in linear
 * time. Its state is a small stack: back-tick strings push a frame, and each
 * `${` inside one pushes a code frame that pops at its matching `}`, so
 * interpolations nest to any depth. Block comments nest, as they do in Rhai.
 */
import { StreamLanguage, type StreamParser, type StringStream } from '@codemirror/language';

/** Statement and declaration keywords. */
export const KEYWORDS = new Set([
	'let', 'const', 'fn', 'private', 'import', 'export', 'as', 'global', 'is_shared'
]);
/** Control flow. */
export const CONTROL = new Set([
	'if', 'else', 'switch', 'while', 'loop', 'do', 'until', 'for', 'in', 'break', 'continue',
	'return', 'throw', 'try', 'catch'
]);
const ATOMS = new Set(['true', 'false']);
/** Names the script SDK and Rhai give every script (`docs/script-api.md`). */
export const BUILTINS = new Set([
	'print', 'debug', 'log', 'response', 'type_of', 'is_def_var', 'is_def_fn', 'to_string',
	'to_int', 'to_float', 'len', 'keys', 'values', 'contains', 'form_decode', 'json_parse',
	'json_stringify', 'parse_json', 'to_json', 'sha256', 'hmac_sha256', 'base64_encode',
	'base64_decode', 'base64_decode_blob', 'base64url_encode', 'base64url_decode',
	'base64url_decode_blob', 'hex_encode', 'hex_decode', 'hex_decode_blob', 'url_encode',
	'url_decode', 'timestamp'
]);
/** `request` and `this` read like variables but are special. */
const SPECIAL_VARS = new Set(['request', 'this']);
/** Words Rhai reserves; using one is a compile error, so mark them. */
const RESERVED = new Set([
	'var', 'static', 'shared', 'goto', 'exit', 'match', 'case', 'public', 'protected', 'new',
	'use', 'with', 'module', 'package', 'super', 'spawn', 'thread', 'go', 'sync', 'async',
	'await', 'yield', 'default', 'void', 'null', 'nil'
]);

type Frame = { kind: 'code'; braces: number } | { kind: 'template' };

export interface RhaiState {
	/** Innermost last; never empty. */
	stack: Frame[];
	/** Open block comments (they nest). */
	commentDepth: number;
	/** Inside a `"…"` string continued onto the next line with `\`. */
	inString: boolean;
	/** The previous significant token was `fn`: the next name is a definition. */
	afterFn: boolean;
	/** Open brackets, for indentation. */
	depth: number;
}

const OPERATOR_CHARS = /[+\-*/%=!<>&|^~?:.@$#]/;

function top(state: RhaiState): Frame {
	// The stack starts with one frame and the bottom frame is never popped.
	return state.stack[state.stack.length - 1] as Frame;
}

function blockComment(stream: StringStream, state: RhaiState): string {
	while (!stream.eol()) {
		if (stream.match('/*')) state.commentDepth += 1;
		else if (stream.match('*/')) {
			state.commentDepth -= 1;
			if (state.commentDepth === 0) break;
		} else stream.next();
	}
	return 'blockComment';
}

function doubleQuoted(stream: StringStream, state: RhaiState): string {
	state.inString = true;
	while (!stream.eol()) {
		const ch = stream.next();
		if (ch === '\\') {
			if (stream.eol()) return 'string'; // line continuation: stay in the string
			stream.next();
		} else if (ch === '"') {
			state.inString = false;
			return 'string';
		}
	}
	// An unterminated string without a continuation ends at the line end.
	state.inString = false;
	return 'string';
}

/** Inside a back-tick string: `${`, or text up to it, the closing back-tick or the line end. */
function template(stream: StringStream, state: RhaiState): string {
	if (stream.match('${')) {
		state.stack.push({ kind: 'code', braces: 0 });
		return 'meta';
	}
	return templateText(stream, state);
}

function templateText(stream: StringStream, state: RhaiState): string {
	while (!stream.eol()) {
		if (stream.peek() === '`') {
			stream.next();
			state.stack.pop();
			return 'string.special';
		}
		if (stream.match('${', false)) break;
		stream.next();
	}
	return 'string.special';
}

function number(stream: StringStream): boolean {
	if (stream.match(/^0x[0-9a-fA-F_]+/) || stream.match(/^0o[0-7_]+/) || stream.match(/^0b[01_]+/)) {
		return true;
	}
	// 1_000, 3.14, 1e-9, 6.02e23 — but not the `..` of a range.
	return Boolean(stream.match(/^\d[\d_]*(\.(?!\.)[\d_]*)?([eE][+-]?\d+)?/));
}

function code(stream: StringStream, state: RhaiState, frame: { kind: 'code'; braces: number }): string | null {
	if (stream.eatSpace()) return null;
	if (stream.match('//')) {
		stream.skipToEnd();
		return 'lineComment';
	}
	if (stream.match('/*')) {
		state.commentDepth = 1;
		return blockComment(stream, state);
	}
	const ch = stream.peek() ?? '';
	if (ch === '"') {
		stream.next();
		return doubleQuoted(stream, state);
	}
	if (ch === '`') {
		stream.next();
		state.stack.push({ kind: 'template' });
		return templateText(stream, state);
	}
	if (ch === "'") {
		// A character literal: 'a', '\n', '\u{1F600}'.
		stream.next();
		if (stream.match(/^\\(u\{[0-9a-fA-F]+\}|x[0-9a-fA-F]{2}|.)/) || stream.next() !== undefined) {
			stream.eat("'");
		}
		return 'character';
	}
	if (/\d/.test(ch)) {
		number(stream);
		state.afterFn = false;
		return 'number';
	}
	if (/[A-Za-z_]/.test(ch)) {
		stream.match(/^[A-Za-z_][A-Za-z0-9_]*/);
		const word = stream.current();
		const wasFn = state.afterFn;
		state.afterFn = word === 'fn';
		if (wasFn) return 'variableName.function.definition';
		if (CONTROL.has(word)) return 'controlKeyword';
		if (KEYWORDS.has(word)) return word === 'fn' || word === 'let' || word === 'const' ? 'definitionKeyword' : 'keyword';
		if (ATOMS.has(word)) return 'bool';
		if (RESERVED.has(word)) return 'invalid';
		if (SPECIAL_VARS.has(word)) return 'variableName.special';
		if (stream.match(/^\s*\(/, false)) {
			return BUILTINS.has(word) ? 'variableName.function.standard' : 'variableName.function';
		}
		if (BUILTINS.has(word)) return 'variableName.standard';
		// `map.field` and `#{ key: value }` keys read as properties.
		const before = stream.string.slice(0, stream.start).trimEnd();
		if (before.endsWith('.') || before.endsWith('?.')) return 'propertyName';
		if (stream.match(/^\s*:(?!:)/, false)) return 'propertyName';
		return 'variableName';
	}
	state.afterFn = false;
	if (stream.match('#{')) {
		frame.braces += 1;
		state.depth += 1;
		return 'brace';
	}
	if (ch === '{') {
		stream.next();
		frame.braces += 1;
		state.depth += 1;
		return 'brace';
	}
	if (ch === '}') {
		stream.next();
		state.depth = Math.max(0, state.depth - 1);
		if (frame.braces === 0 && state.stack.length > 1) {
			// The `}` that closes a `${ … }` interpolation.
			state.stack.pop();
			return 'meta';
		}
		frame.braces = Math.max(0, frame.braces - 1);
		return 'brace';
	}
	if (ch === '(' || ch === '[') {
		stream.next();
		state.depth += 1;
		return ch === '(' ? 'paren' : 'squareBracket';
	}
	if (ch === ')' || ch === ']') {
		stream.next();
		state.depth = Math.max(0, state.depth - 1);
		return ch === ')' ? 'paren' : 'squareBracket';
	}
	if (ch === ';' || ch === ',') {
		stream.next();
		return 'separator';
	}
	if (OPERATOR_CHARS.test(ch)) {
		stream.match(/^[+\-*/%=!<>&|^~?:.@$#]+/);
		return 'operator';
	}
	stream.next();
	return 'invalid';
}

export const rhaiParser: StreamParser<RhaiState> = {
	name: 'rhai',
	startState: () => ({
		stack: [{ kind: 'code', braces: 0 }],
		commentDepth: 0,
		inString: false,
		afterFn: false,
		depth: 0
	}),
	copyState: (s) => ({
		stack: s.stack.map((f) => ({ ...f })),
		commentDepth: s.commentDepth,
		inString: s.inString,
		afterFn: s.afterFn,
		depth: s.depth
	}),
	token(stream, state) {
		if (state.commentDepth > 0) return blockComment(stream, state);
		if (state.inString) return doubleQuoted(stream, state);
		const frame = top(state);
		if (frame.kind === 'template') return template(stream, state);
		return code(stream, state, frame);
	},
	indent(state, textAfter, context) {
		const closing = /^\s*[}\])]/.test(textAfter) ? 1 : 0;
		return Math.max(0, state.depth - closing) * context.unit;
	},
	languageData: {
		commentTokens: { line: '//', block: { open: '/*', close: '*/' } },
		closeBrackets: { brackets: ['(', '[', '{', '"', '`'] },
		indentOnInput: /^\s*[}\])]$/
	}
};

export const rhai = StreamLanguage.define(rhaiParser);
