/**
 * The editor's extensions: Rhai highlighting, the dark theme, the keymap
 * and the server's compile error as a lint diagnostic.
 */
import { autocompletion, closeBrackets, closeBracketsKeymap, completionKeymap, type CompletionContext, type CompletionResult } from '@codemirror/autocomplete';
import { defaultKeymap, history, historyKeymap, indentWithTab } from '@codemirror/commands';
import { bracketMatching, HighlightStyle, indentOnInput, syntaxHighlighting } from '@codemirror/language';
import { lintGutter, lintKeymap, setDiagnostics, type Diagnostic } from '@codemirror/lint';
import { highlightSelectionMatches, searchKeymap } from '@codemirror/search';
import { EditorState, type Extension, type Text } from '@codemirror/state';
import {
	crosshairCursor,
	drawSelection,
	dropCursor,
	EditorView,
	highlightActiveLine,
	highlightActiveLineGutter,
	highlightSpecialChars,
	keymap,
	lineNumbers,
	rectangularSelection
} from '@codemirror/view';
import { tags as t } from '@lezer/highlight';
import { BUILTINS, CONTROL, KEYWORDS, rhai } from './rhai';

/** Where the compiler stopped, as the admin API reports it (1-based). */
export interface CompileProblem {
	message: string;
	line: number | null;
	column: number | null;
}

const highlight = HighlightStyle.define([
	{ tag: [t.keyword, t.controlKeyword, t.definitionKeyword, t.moduleKeyword], color: '#c792ea' },
	{ tag: [t.string], color: '#a5d6a7' },
	{ tag: [t.special(t.string)], color: '#9ee2c8' },
	{ tag: [t.character], color: '#a5d6a7' },
	{ tag: [t.number, t.bool], color: '#f7a86b' },
	{ tag: [t.lineComment, t.blockComment], color: '#6b7590', fontStyle: 'italic' },
	{ tag: [t.operator], color: '#89ddff' },
	{ tag: [t.meta], color: '#ff9cac' },
	{ tag: [t.definition(t.function(t.variableName))], color: '#82aaff', fontWeight: '600' },
	{ tag: [t.function(t.variableName)], color: '#82aaff' },
	{ tag: [t.standard(t.function(t.variableName)), t.standard(t.variableName)], color: '#ffcb6b' },
	{ tag: [t.special(t.variableName)], color: '#f07178' },
	{ tag: [t.propertyName], color: '#b8c4e0' },
	{ tag: [t.variableName], color: '#e4e8f1' },
	{ tag: [t.brace, t.paren, t.squareBracket], color: '#a6accd' },
	{ tag: [t.separator], color: '#7d869b' },
	{ tag: [t.invalid], color: '#ff5370', textDecoration: 'underline wavy' }
]);

const theme = EditorView.theme(
	{
		'&': {
			height: '100%',
			backgroundColor: 'var(--bg-raised)',
			color: 'var(--text)',
			fontSize: '13px'
		},
		'.cm-scroller': { fontFamily: 'var(--mono)', lineHeight: '1.6' },
		'.cm-content': { caretColor: '#aec2ff', padding: '10px 0' },
		'.cm-cursor, .cm-dropCursor': { borderLeftColor: '#aec2ff', borderLeftWidth: '2px' },
		'&.cm-focused': { outline: 'none' },
		'&.cm-focused .cm-selectionBackground, .cm-selectionBackground, ::selection': {
			backgroundColor: 'rgba(124, 156, 255, 0.28) !important'
		},
		'.cm-gutters': {
			backgroundColor: 'var(--bg-raised)',
			color: '#4d566b',
			border: 'none',
			borderRight: '1px solid var(--border)'
		},
		'.cm-lineNumbers .cm-gutterElement': { padding: '0 10px 0 14px', minWidth: '42px' },
		'.cm-activeLine': { backgroundColor: 'rgba(255, 255, 255, 0.025)' },
		'.cm-activeLineGutter': { backgroundColor: 'rgba(255, 255, 255, 0.04)', color: '#9aa3b8' },
		'&.cm-focused .cm-matchingBracket': {
			backgroundColor: 'rgba(124, 156, 255, 0.25)',
			outline: '1px solid rgba(124, 156, 255, 0.6)'
		},
		'&.cm-focused .cm-nonmatchingBracket': { backgroundColor: 'rgba(244, 103, 125, 0.3)' },
		'.cm-selectionMatch': { backgroundColor: 'rgba(255, 255, 255, 0.07)' },
		'.cm-lintRange-error': {
			backgroundImage: 'none',
			textDecoration: 'underline wavy #f4677d',
			textUnderlineOffset: '3px',
			backgroundColor: 'rgba(244, 103, 125, 0.12)'
		},
		'.cm-lint-marker-error': { content: 'none' },
		'.cm-tooltip': {
			backgroundColor: 'var(--panel-2)',
			border: '1px solid var(--border-strong)',
			borderRadius: '6px',
			color: 'var(--text)'
		},
		'.cm-tooltip-lint': { padding: '0' },
		'.cm-diagnostic': { padding: '6px 10px', fontFamily: 'var(--mono)', fontSize: '12px' },
		'.cm-diagnostic-error': { borderLeft: '3px solid #f4677d' },
		'.cm-tooltip-autocomplete > ul': { fontFamily: 'var(--mono)', fontSize: '12.5px' },
		'.cm-tooltip-autocomplete > ul > li[aria-selected]': {
			backgroundColor: 'var(--accent-2)',
			color: '#fff'
		},
		'.cm-panels': { backgroundColor: 'var(--panel)', color: 'var(--text)' },
		'.cm-panels.cm-panels-bottom': { borderTop: '1px solid var(--border)' },
		'.cm-searchMatch': { backgroundColor: 'rgba(245, 180, 69, 0.25)' },
		'.cm-textfield': {
			backgroundColor: 'var(--bg-raised)',
			border: '1px solid var(--border-strong)',
			borderRadius: '4px',
			color: 'var(--text)'
		},
		'.cm-button': {
			backgroundImage: 'none',
			backgroundColor: 'var(--panel-2)',
			border: '1px solid var(--border-strong)',
			borderRadius: '4px',
			color: 'var(--text)'
		}
	},
	{ dark: true }
);

const WORDS = [
	...[...KEYWORDS, ...CONTROL, 'true', 'false'].map((label) => ({ label, type: 'keyword' })),
	...[...BUILTINS].map((label) => ({ label, type: 'function' })),
	{ label: 'request', type: 'variable', detail: 'method, path, params, query, headers, body, json' }
];

function complete(context: CompletionContext): CompletionResult | null {
	const word = context.matchBefore(/[A-Za-z_][A-Za-z0-9_]*/);
	if (!word || (word.from === word.to && !context.explicit)) return null;
	return { from: word.from, options: WORDS, validFor: /^[A-Za-z0-9_]*$/ };
}

/** Everything but the per-editor callbacks. */
export function editorExtensions(opts: { onSave: () => void; onChange: (doc: string) => void; readOnly: boolean }): Extension[] {
	return [
		lineNumbers(),
		highlightActiveLineGutter(),
		highlightSpecialChars(),
		history(),
		drawSelection(),
		dropCursor(),
		EditorState.allowMultipleSelections.of(true),
		indentOnInput(),
		rhai,
		syntaxHighlighting(highlight),
		bracketMatching(),
		closeBrackets(),
		autocompletion({ override: [complete], icons: false }),
		rectangularSelection(),
		crosshairCursor(),
		highlightActiveLine(),
		highlightSelectionMatches(),
		lintGutter(),
		EditorState.tabSize.of(4),
		EditorState.readOnly.of(opts.readOnly),
		EditorView.contentAttributes.of({ spellcheck: 'false', autocapitalize: 'off', autocorrect: 'off' }),
		keymap.of([
			{
				key: 'Mod-s',
				preventDefault: true,
				run: () => {
					opts.onSave();
					return true;
				}
			},
			...closeBracketsKeymap,
			...defaultKeymap,
			...searchKeymap,
			...historyKeymap,
			...completionKeymap,
			...lintKeymap,
			indentWithTab
		]),
		EditorView.updateListener.of((update) => {
			if (update.docChanged) opts.onChange(update.state.doc.toString());
		}),
		theme
	];
}

/**
 * The document range a compiler position points at: the word (or the
 * character) at line:column, clamped into the document, never empty unless
 * the document is.
 */
export function problemRange(doc: Text, problem: CompileProblem): { from: number; to: number } {
	if (doc.length === 0) return { from: 0, to: 0 };
	const lineNo = Math.min(Math.max(problem.line ?? 1, 1), doc.lines);
	const line = doc.line(lineNo);
	if (problem.column === null) {
		// No column: the whole line (or the line break of an empty one).
		return line.length > 0
			? { from: line.from, to: line.to }
			: { from: line.from, to: Math.min(line.from + 1, doc.length) };
	}
	let from = line.from + Math.min(Math.max(problem.column - 1, 0), line.length);
	const rest = line.text.slice(from - line.from);
	const word = /^[A-Za-z0-9_]+/.exec(rest)?.[0].length ?? 0;
	let to = from + Math.max(word, 1);
	if (to > line.to) {
		// At the end of the line: mark the last character instead.
		to = line.to;
		from = Math.max(line.from, to - 1);
	}
	if (from === to && to < doc.length) to += 1;
	return { from, to };
}

/** A transaction spec that shows `problem` (or clears diagnostics). */
export function showProblem(view: EditorView, problem: CompileProblem | null) {
	const diagnostics: Diagnostic[] = [];
	if (problem) {
		const { from, to } = problemRange(view.state.doc, problem);
		diagnostics.push({ from, to, severity: 'error', source: 'compiler', message: problem.message });
	}
	view.dispatch(setDiagnostics(view.state, diagnostics));
}
