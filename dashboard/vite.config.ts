import { sveltekit } from '@sveltejs/kit/vite';
import { defineConfig } from 'vitest/config';

export default defineConfig({
	plugins: [sveltekit()],
	server: {
		// `npm run dev` talks to a local picloud for the API.
		proxy: {
			'/api': process.env.PICLOUD_URL ?? 'http://127.0.0.1:8080',
			'/readyz': process.env.PICLOUD_URL ?? 'http://127.0.0.1:8080',
			'/healthz': process.env.PICLOUD_URL ?? 'http://127.0.0.1:8080'
		}
	},
	build: { chunkSizeWarningLimit: 800 },
	test: {
		include: ['src/**/*.test.ts'],
		environment: 'node'
	}
});
