// See https://svelte.dev/docs/kit/types#app.d.ts
declare global {
	namespace App {
		interface PageState {
			/** The invocation whose details are open in the drawer. */
			invocation?: string;
		}
	}
}

export {};
