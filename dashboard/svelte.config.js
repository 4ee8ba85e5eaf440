import adapter from '@sveltejs/adapter-static';
import { vitePreprocess } from '@sveltejs/vite-plugin-svelte';

/** @type {import('@sveltejs/kit').Config} */
const config = {
	preprocess: vitePreprocess(),
	kit: {
		// A single-page app: `picloud` (or Caddy) answers every unknown path with
		// the fallback page, and the client router takes it from there.
		// Precompressed .br/.gz copies: picloud serves them to browsers that accept them.
		adapter: adapter({ pages: 'build', assets: 'build', fallback: 'index.html', precompress: true, strict: true }),
		paths: { relative: false },
		// SvelteKit boots from one inline script; hash mode puts its digest in a
		// <meta> CSP. The server sends the same policy (and frame-ancestors,
		// which a <meta> cannot carry) as a header.
		csp: {
			mode: 'hash',
			directives: {
				'default-src': ['self'],
				'script-src': ['self'],
				'style-src': ['self', 'unsafe-inline'],
				'img-src': ['self', 'data:'],
				'font-src': ['self'],
				'connect-src': ['self'],
				'object-src': ['none'],
				'base-uri': ['none'],
				'form-action': ['self']
			}
		},
		version: { pollInterval: 0 }
	}
};

export default config;
