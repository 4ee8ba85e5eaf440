// Test harness: a real `picloud` on a free port with a fresh data directory
// and a known admin token, and Debian's Chromium driven by playwright-core.
import { spawn } from 'node:child_process';
import { mkdtemp, mkdir, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const dashboardDir = path.resolve(here, '../..');
export const repoDir = path.resolve(dashboardDir, '..');
export const screenshotDir = path.join(repoDir, 'test-output', 'dashboard');

export const TOKEN = 'picloud_dashboard_test_0123456789abcdef0123456789abcdef';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = [
	'--headless',
	'--no-sandbox',
	'--disable-gpu',
	'--disable-quic',
	'--no-first-run',
	'--disable-background-networking',
	'--disable-component-update',
	'--disable-sync'
];

/**
 * Starts picloud; resolves once it prints the address it listens on. `env`
 * adds settings; with `PICLOUD_ADMIN_BIND` the admin address is `adminBase`.
 */
export async function startServer(env = {}) {
	const bin = process.env.PICLOUD_BIN ?? path.join(repoDir, 'target', 'debug', 'picloud');
	if (!existsSync(bin)) throw new Error(`no picloud binary at ${bin}; run cargo build -p picloud`);
	const build = process.env.PICLOUD_DASHBOARD_DIR ?? path.join(dashboardDir, 'build');
	if (!existsSync(path.join(build, 'index.html'))) {
		throw new Error(`no dashboard build in ${build}; run scripts/lib/dashboard-build`);
	}
	const dataDir = await mkdtemp(path.join(tmpdir(), 'picloud-dashboard-e2e-'));
	const child = spawn(bin, ['serve'], {
		env: {
			PATH: process.env.PATH ?? '/usr/bin:/bin',
			PICLOUD_BIND: '127.0.0.1:0',
			PICLOUD_DATA_DIR: dataDir,
			PICLOUD_ADMIN_TOKEN: TOKEN,
			PICLOUD_DASHBOARD_DIR: build,
			PICLOUD_WORKERS: process.env.PICLOUD_WORKERS ?? '2',
			RUST_LOG: process.env.PICLOUD_TEST_LOG ?? 'error',
			...env
		},
		stdio: ['ignore', 'pipe', 'inherit']
	});
	let adminBase = null;
	const base = await new Promise((resolve, reject) => {
		const timer = setTimeout(() => reject(new Error('picloud did not announce its address within 60 s')), 60_000);
		child.once('exit', (code) => reject(new Error(`picloud exited early with ${code}`)));
		createInterface({ input: child.stdout }).on('line', (line) => {
			const admin = /^picloud admin listening on (http:\/\/\S+)/.exec(line);
			if (admin) adminBase = admin[1];
			const m = /^picloud listening on (http:\/\/\S+)/.exec(line);
			if (m) {
				clearTimeout(timer);
				resolve(m[1]);
			}
		});
	});
	return {
		base,
		adminBase,
		async stop() {
			if (child.exitCode === null) {
				child.kill('SIGTERM');
				await new Promise((r) => {
					const t = setTimeout(() => {
						child.kill('SIGKILL');
						r(undefined);
					}, 10_000);
					child.once('exit', () => {
						clearTimeout(t);
						r(undefined);
					});
				});
			}
			await rm(dataDir, { recursive: true, force: true });
		}
	};
}

/** Chromium with a fresh profile directory of its own. */
export async function startBrowser() {
	const profile = await mkdtemp(path.join(tmpdir(), 'picloud-chromium-'));
	const context = await chromium.launchPersistentContext(profile, {
		executablePath: CHROMIUM,
		headless: true,
		args: CHROMIUM_ARGS,
		viewport: { width: 1440, height: 900 },
		deviceScaleFactor: 1
	});
	return {
		context,
		async stop() {
			await context.close();
			await rm(profile, { recursive: true, force: true });
		}
	};
}

/** Collects console errors, page errors and CSP reports of a page. */
export function watchProblems(page) {
	const problems = [];
	page.on('console', (msg) => {
		if (msg.type() === 'error') problems.push(`console: ${msg.text()}`);
	});
	page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
	return problems;
}

export async function screenshot(page, name) {
	await mkdir(screenshotDir, { recursive: true });
	// Toasts from earlier steps would cover the page: dismiss them as a user would.
	for (const close of await page.locator('[data-testid="toast"] button').all()) await close.click().catch(() => {});
	await page.screenshot({ path: path.join(screenshotDir, `${name}.png`), fullPage: false });
}

/** The admin API, straight, for setting up and checking state. */
export async function admin(base, method, apiPath, body) {
	const r = await fetch(base + apiPath, {
		method,
		headers: { authorization: `Bearer ${TOKEN}`, ...(body ? { 'content-type': 'application/json' } : {}) },
		body: body ? JSON.stringify(body) : undefined
	});
	const text = await r.text();
	return { status: r.status, body: text ? JSON.parse(text) : null };
}
