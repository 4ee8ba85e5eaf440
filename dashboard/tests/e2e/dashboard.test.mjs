// The dashboard in a real browser against a real picloud: sign in, write a
// script with a syntax error and see it inline, fix and save, invoke it from
// the try-it panel, find the invocation with its stats and logs, and see the
// charts. Screenshots of each main page go to test-output/dashboard/.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { admin, screenshot, startBrowser, startServer, TOKEN, watchProblems } from './harness.mjs';

const BROKEN = `let name = request.query["name"] ?? "world";
log(\`greeting \${name}\`);
let greeting = #{ hello: name ;
greeting
`;

const FIXED = `let name = request.query["name"] ?? "world";
log(\`greeting \${name}\`);
if name == "boom" { throw "asked to fail"; }
#{ hello: name, method: request.method }
`;

/** Expected noise: the wrong token's 401, the record poll's 404s, the compile error's 422, the failing call's 500. */
function unexpected(problems) {
	return problems.filter((p) => !/Failed to load resource: the server responded with a status of (401|404|422|500)/.test(p));
}

/** Replaces the editor's text the way a user would: select all, type. */
async function typeInEditor(page, text) {
	const content = page.locator('[data-testid="editor"] .cm-content').first();
	await content.click();
	await page.keyboard.press('Control+A');
	await page.keyboard.press('Delete');
	// insertText types the whole text at once; auto-indent and bracket closing stay out of it.
	await page.keyboard.insertText(text);
}

// The layout shift of the current view since `since` (a `performance.now()`
// taken before navigating to it). The dashboard is one document, so the
// buffered entries also hold every earlier view's shifts (rows streamed
// into the invocations list, say): those are not this view's.
async function layoutShift(page, since = 0) {
	return page.evaluate(
		(since) =>
			new Promise((resolve) => {
				let total = 0;
				new PerformanceObserver((list) => {
					for (const e of list.getEntries()) if (!e.hadRecentInput && e.startTime >= since) total += e.value;
				}).observe({ type: 'layout-shift', buffered: true });
				setTimeout(() => resolve(total), 300);
			}),
		since
	);
}

describe('dashboard', () => {
	let server;
	let browser;
	let page;
	let problems;
	let scriptId;

	before(async () => {
		server = await startServer();
		browser = await startBrowser();
		page = browser.context.pages()[0] ?? (await browser.context.newPage());
		page.setDefaultTimeout(15_000);
		problems = watchProblems(page);
	});

	after(async () => {
		await browser?.stop();
		await server?.stop();
	});

	it('serves the app with a strict content security policy', async () => {
		const r = await fetch(`${server.base}/scripts/whatever`);
		assert.equal(r.status, 200);
		const csp = r.headers.get('content-security-policy') ?? '';
		assert.match(csp, /script-src 'self' 'sha256-[A-Za-z0-9+/=]+'/);
		assert.match(csp, /frame-ancestors 'none'/);
		assert.equal(r.headers.get('referrer-policy'), 'no-referrer');
		assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
	});

	it('refuses a wrong token with a clear message, then signs in', async () => {
		await page.goto(server.base + '/');
		await page.waitForURL(/\/login\?next=/);
		await screenshot(page, '01-sign-in');

		await page.getByTestId('token-input').fill('picloud_not_the_right_token');
		await page.getByTestId('sign-in').click();
		const error = page.getByTestId('login-error');
		await error.waitFor();
		assert.match(await error.innerText(), /not accepted/);
		await screenshot(page, '02-sign-in-wrong-token');

		await page.getByTestId('token-input').fill(TOKEN);
		await page.getByTestId('sign-in').click();
		await page.waitForURL(`${server.base}/`);
		await page.getByText('No scripts yet').waitFor();
		assert.equal(await page.evaluate(() => sessionStorage.getItem('picloud.admin-token')), TOKEN);
		assert.equal(await page.evaluate(() => document.cookie), '');
	});

	it('shows a syntax error inline at its line and column', async () => {
		await page.getByTestId('new-script').click();
		await page.waitForURL(/\/scripts\/new$/);
		await page.getByTestId('script-name-input').fill('greeter');
		await typeInEditor(page, BROKEN);
		await page.keyboard.press('Control+S');

		const bar = page.getByTestId('compile-error');
		await bar.waitFor();
		const text = await bar.innerText();
		assert.match(text, /line 3/, text);
		// The diagnostic sits in the editor, on line 3.
		const mark = page.locator('.cm-lintRange-error').first();
		await mark.waitFor();
		const line = await mark.evaluate((el) => {
			const lines = [...document.querySelectorAll('.cm-content .cm-line')];
			return lines.findIndex((l) => l.contains(el)) + 1;
		});
		assert.equal(line, 3);
		await mark.hover();
		await page.locator('.cm-tooltip-lint').waitFor();
		await screenshot(page, '03-editor-compile-error');
		// Nothing was stored.
		assert.deepEqual((await admin(server.base, 'GET', '/api/admin/scripts')).body, []);
	});

	it('creates the fixed script and saves a new version with Ctrl+S', async () => {
		await typeInEditor(page, FIXED);
		await page.keyboard.press('Control+S');
		await page.waitForURL(/\/scripts\/[0-9a-f-]{36}$/);
		scriptId = page.url().split('/').pop();
		assert.equal(await page.getByTestId('script-version').innerText(), 'v1');

		await typeInEditor(page, FIXED.replace('request.method }', 'request.method, v: 2 }'));
		await page.getByTestId('dirty').waitFor();
		await page.keyboard.press('Control+S');
		await page.getByText('Saved as version 2').waitFor();
		assert.equal(await page.getByTestId('script-version').innerText(), 'v2');
		const stored = await admin(server.base, 'GET', `/api/admin/scripts/${scriptId}`);
		assert.equal(stored.body.version, 2);
		assert.match(stored.body.source, /v: 2/);
	});

	it('invokes the script from the try-it panel and shows its stats and log', async () => {
		await page.getByTestId('try-query').fill('name=Ada');
		await page.getByTestId('try-send').click();
		const status = page.getByTestId('try-status');
		await status.waitFor();
		assert.match(await status.innerText(), /^200/);
		const body = JSON.parse(await page.getByTestId('try-body-view').innerText());
		assert.deepEqual(body, { hello: 'Ada', method: 'GET', v: 2 });

		await page.getByTestId('try-invocation-tab').click();
		const detail = page.getByTestId('invocation-detail');
		await detail.waitFor({ timeout: 20_000 });
		assert.match(await page.getByTestId('invocation-logs').innerText(), /greeting Ada/);
		const stats = await page.getByTestId('invocation-stats').innerText();
		assert.match(stats, /Wall time\s+\d/);
		assert.match(stats, /Operations\s+\d/);
		await screenshot(page, '04-script-try-it');

		// A failing call too, from an example payload, for the outcome filter.
		await page.getByTestId('try-example').selectOption('git-push');
		assert.equal(await page.getByTestId('try-method').inputValue(), 'POST');
		await page.getByTestId('try-query').fill('name=boom');
		await page.getByTestId('try-send').click();
		await page.getByText(/^500/).first().waitFor();
	});

	it('lists the invocations with their stats, filters them and opens the log', async () => {
		await page.getByRole('link', { name: 'Invocations' }).click();
		await page.waitForURL(/\/invocations$/);
		const rows = page.getByTestId('invocation-row');
		await rows.nth(1).waitFor({ timeout: 20_000 });
		assert.equal(await rows.count(), 2);
		// Newest first: the failing call.
		assert.equal(await rows.nth(0).locator('[data-outcome]').getAttribute('data-outcome'), 'script_error');
		const okRow = rows.nth(1);
		const cells = await okRow.locator('td').allInnerTexts();
		assert.equal(cells[1].trim(), 'ok');
		assert.equal(cells[2].trim(), '200');
		assert.match(cells[4], /\d+(\.\d+)? (µs|ms|s)/, `wall time cell: ${cells[4]}`);
		assert.match(cells[5], /\d+(\.\d+)? (µs|ms|s)/, `cpu time cell: ${cells[5]}`);

		await page.getByTestId('outcome-filter').selectOption('ok');
		await page.waitForFunction(() => document.querySelectorAll('[data-testid="invocation-row"]').length === 1);
		assert.equal(await rows.first().locator('[data-outcome]').getAttribute('data-outcome'), 'ok');

		await rows.first().click();
		await page.getByTestId('invocation-logs').waitFor();
		assert.match(await page.getByTestId('invocation-logs').innerText(), /greeting Ada/);
		await screenshot(page, '05-invocations-log');
		await page.keyboard.press('Escape');
		await page.getByTestId('invocation-detail').waitFor({ state: 'detached' });
		await page.getByTestId('outcome-filter').selectOption('');
		await page.waitForFunction(() => document.querySelectorAll('[data-testid="invocation-row"]').length === 2);
	});

	it('streams new invocations live', async () => {
		await page.getByTestId('live').click();
		await page.getByTestId('live').getByText('Live').waitFor();
		const r = await fetch(`${server.base}/api/execute/${scriptId}?name=Streamed`);
		assert.equal(r.status, 200);
		const id = r.headers.get('x-picloud-invocation-id');
		await page.locator(`[data-testid="invocation-row"][data-id="${id}"]`).waitFor({ timeout: 20_000 });
		assert.equal(await page.getByTestId('invocation-row').first().getAttribute('data-id'), id);
		await page.getByTestId('live').click();
	});

	it('pages through older invocations', async () => {
		for (let i = 0; i < 55; i++) {
			const r = await fetch(`${server.base}/api/execute/${scriptId}?name=n${i}`);
			assert.equal(r.status, 200);
			await r.arrayBuffer();
		}
		// Records are written in batches: wait until all 58 are kept.
		for (let i = 0; i < 100; i++) {
			const page = await admin(server.base, 'GET', `/api/admin/scripts/${scriptId}/invocations?limit=100`);
			if (page.body.invocations.length === 58) break;
			await new Promise((r) => setTimeout(r, 100));
		}
		await page.getByTestId('refresh').click();
		await page.waitForFunction(() => document.querySelectorAll('[data-testid="invocation-row"]').length === 50);
		const newest = await page.getByTestId('invocation-row').first().getAttribute('data-id');
		await page.getByTestId('older').click();
		await page.waitForFunction(() => document.querySelectorAll('[data-testid="invocation-row"]').length === 8);
		// The oldest page ends with the very first call.
		assert.equal(await page.getByTestId('older').isDisabled(), true);
		await page.getByText('← Newer').click();
		await page.waitForFunction(
			(id) => document.querySelector('[data-testid="invocation-row"]')?.getAttribute('data-id') === id,
			newest
		);
	});

	it('renders the charts', async () => {
		const since = await page.evaluate(() => performance.now());
		await page.getByRole('link', { name: 'Metrics' }).click();
		await page.waitForURL(/\/metrics$/);
		const volume = page.getByTestId('chart-volume');
		await volume.waitFor({ timeout: 20_000 });
		for (const id of ['chart-volume', 'chart-latency', 'chart-cpu', 'chart-memory']) {
			const canvas = page.getByTestId(id).locator('canvas');
			await canvas.waitFor();
			const box = await canvas.boundingBox();
			assert.ok(box && box.width > 100 && box.height > 100, `${id} has a real canvas`);
		}
		const cards = await page.getByTestId('stat-card').allInnerTexts();
		assert.match(cards[0], /Invocations\s+58/);
		assert.match(cards[1], /Error rate\s+1\.7%/);
		assert.ok((await layoutShift(page, since)) < 0.1, 'the metrics page does not jump while charts load');
		await screenshot(page, '06-metrics');
	});

	it('shows the version history', async () => {
		await page.getByRole('link', { name: 'Versions' }).click();
		const table = page.getByTestId('versions-table');
		await table.waitFor();
		await page.getByText('current').waitFor();
		assert.match(await table.innerText(), /v2[\s\S]*v1/);
		const v1 = table.locator('tbody tr').nth(1);
		await v1.getByRole('button', { name: 'View' }).click();
		const source = page.locator('[aria-label="Source of version 1"]');
		await source.waitFor();
		assert.doesNotMatch(await source.innerText(), /v: 2/);
		await screenshot(page, '07-versions');

		await v1.getByRole('button', { name: 'Roll back' }).click();
		await page.getByTestId('confirm-button').click();
		await page.getByText('Rolled back: version 3 now runs the source of version 1').waitFor();
		assert.equal(await page.getByTestId('script-version').innerText(), 'v3');
		await page.getByText('restores v1').waitFor();
		const r = await fetch(`${server.base}/api/execute/${scriptId}?name=Back`);
		assert.deepEqual(await r.json(), { hello: 'Back', method: 'GET' });
	});

	it('lists the script with its calls and error rate', async () => {
		await page.goto(server.base + '/');
		const row = page.getByTestId('scripts-table').locator('tbody tr').first();
		await row.getByText('greeter').waitFor();
		await page.waitForFunction(() => /1\.7%/.test(document.querySelector('[data-testid="scripts-table"] tbody tr')?.textContent ?? ''));
		const cells = await row.locator('td').allInnerTexts();
		assert.equal(cells[2].trim(), 'v3');
		assert.equal(cells[3].trim(), 'just now');
		assert.equal(cells[4].trim(), '59');
		assert.equal(cells[5].trim(), '1.7%');
		await row.locator('canvas').waitFor();
		assert.ok((await layoutShift(page)) < 0.1, 'the list does not jump while it loads');
		await screenshot(page, '08-scripts');
	});

	it('shows the pool and the sandbox', async () => {
		await page.getByRole('link', { name: 'System' }).click();
		const pool = page.getByTestId('pool-stats');
		await pool.waitFor();
		assert.match(await pool.innerText(), /Workers\s+\d/);
		await page.waitForSelector('[data-testid="sandbox-layers"], [data-testid="unavailable"]');
		await screenshot(page, '09-system');
	});

	it('works on a phone-sized screen', async () => {
		await page.setViewportSize({ width: 390, height: 844 });
		for (const [path, name] of [
			['/', '10-phone-scripts'],
			[`/scripts/${scriptId}`, '11-phone-editor'],
			[`/scripts/${scriptId}/invocations`, '12-phone-invocations']
		]) {
			await page.goto(server.base + path);
			await page.waitForLoadState('networkidle');
			const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
			assert.ok(overflow <= 0, `${path} scrolls sideways by ${overflow}px`);
			await screenshot(page, name);
		}
		await page.setViewportSize({ width: 1440, height: 900 });
	});

	it('binds a route and calls the script through it', async () => {
		await page.goto(`${server.base}/scripts/${scriptId}/settings`);
		await page.getByTestId('route-path').fill('/exec/hello/{who}');
		await page.getByTestId('route-method').selectOption('GET');
		await page.getByTestId('route-save').click();
		await page.getByText('Route saved: GET /exec/hello/{who}').waitFor();
		await screenshot(page, '13-settings');

		await page.getByRole('link', { name: 'Code' }).click();
		await page.getByTestId('try-target').selectOption('0');
		await page.getByTestId('try-route-path').fill('/exec/hello/world');
		await page.getByTestId('try-query').fill('name=Route');
		await page.getByTestId('try-send').click();
		await page.waitForFunction(() => /"Route"/.test(document.querySelector('[data-testid="try-body-view"]')?.textContent ?? ''));
		assert.match(await page.getByTestId('try-status').innerText(), /^200/);

		await page.goto(server.base + '/');
		await page.getByTestId('scripts-table').getByText('GET /exec/hello/{who}').waitFor();
	});

	it('deletes the script after confirmation', async () => {
		await page.goto(`${server.base}/scripts/${scriptId}/settings`);
		await page.getByTestId('delete').click();
		const confirm = page.getByTestId('confirm-button');
		assert.equal(await confirm.isDisabled(), true);
		await page.getByTestId('confirm-input').fill('greeter');
		await screenshot(page, '14-delete-confirm');
		await confirm.click();
		await page.waitForURL(`${server.base}/`);
		await page.getByText('No scripts yet').waitFor();
		assert.equal((await admin(server.base, 'GET', `/api/admin/scripts/${scriptId}`)).status, 404);
	});

	it('sends a user whose token stops working back to sign-in', async () => {
		await page.evaluate(() => sessionStorage.setItem('picloud.admin-token', 'picloud_revoked'));
		await page.goto(server.base + '/system');
		await page.waitForURL(/\/login/);
		await page.getByText('did not accept your token').waitFor();
	});

	it('raised no unexpected browser errors (CSP included)', () => {
		assert.deepEqual(unexpected(problems), []);
	});
});
