/**
 * The script being looked at, shared by its tabs: the stored version, the
 * editor's draft and the last compile problem. Switching tabs keeps the
 * draft; only leaving the script asks before dropping unsaved changes.
 */
import { getContext, setContext } from 'svelte';
import { ApiError, describeError, getScript, updateScript } from './api';
import type { CompileProblem } from './editor/setup';
import type { Script } from './types';

const KEY = Symbol('script');

export type SaveResult = { ok: true; script: Script } | { ok: false; message: string };

export class ScriptContext {
	script = $state<Script | null>(null);
	loadError = $state<string | null>(null);
	notFound = $state(false);
	/** What the editor holds. */
	draft = $state('');
	/** The source of the stored version the draft started from. */
	saved = $state('');
	problem = $state<CompileProblem | null>(null);
	saving = $state(false);
	/** Version number and time of the last save in this tab. */
	lastSave = $state<{ version: number; at: number } | null>(null);

	dirty = $derived(this.script !== null && this.draft !== this.saved);

	id = $state('');

	constructor(id: string) {
		this.id = id;
	}

	/** Starts over on another script (the layout is reused between ids). */
	switchTo(id: string) {
		this.id = id;
		this.script = null;
		this.loadError = null;
		this.notFound = false;
		this.draft = '';
		this.saved = '';
		this.problem = null;
		this.lastSave = null;
		void this.load();
	}

	async load() {
		this.loadError = null;
		const id = this.id;
		try {
			const script = await getScript(id);
			if (id === this.id) this.accept(script);
		} catch (e) {
			this.notFound = e instanceof ApiError && e.status === 404;
			this.loadError = describeError(e);
		}
	}

	/** Takes a script from the server; the draft follows unless it was edited. */
	accept(script: Script) {
		const source = script.source ?? '';
		if (!this.dirty) this.draft = source;
		this.saved = source;
		this.script = script;
	}

	/** Saves the draft as a new version; a compile error lands in `problem`. */
	async save(): Promise<SaveResult> {
		if (!this.script || this.saving) return { ok: false, message: 'Not ready' };
		this.saving = true;
		const source = this.draft;
		try {
			const script = await updateScript(this.script.id, { source });
			this.problem = null;
			this.saved = source;
			this.script = script;
			this.lastSave = { version: script.version, at: Date.now() };
			return { ok: true, script };
		} catch (e) {
			if (e instanceof ApiError && e.kind === 'compile_error') {
				this.problem = { message: e.message, line: e.line, column: e.column };
				return { ok: false, message: e.message };
			}
			return { ok: false, message: describeError(e) };
		} finally {
			this.saving = false;
		}
	}
}

export function provideScript(ctx: ScriptContext) {
	setContext(KEY, ctx);
}

export function useScript(): ScriptContext {
	return getContext<ScriptContext>(KEY);
}
