// Origin isolation: a script's response is served from the dashboard's own
// host, so a hostile script could serve a page that tries to read the
// signed-in dashboard's token. The platform's `Content-Security-Policy:
// sandbox` puts every script page in an opaque origin: it may run scripts,
// but it can reach neither the dashboard's storage nor its cookies, and its
// requests to the admin API carry no token.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { admin, startBrowser, startServer, TOKEN } from './harness.mjs';

// The page a hostile script serves: it reports what it could reach.
const PAGE = [
	"<!doctype html><html><body><pre id='out'>running</pre><script>",
	'const out = [];',
	"const attempt = (name, f) => { try { out.push(name + ': ' + String(f())); } catch (e) { out.push(name + ': blocked ' + e.name); } };",
	"attempt('origin', () => self.origin);",
	"attempt('session', () => sessionStorage.getItem('picloud.admin-token'));",
	"attempt('local', () => localStorage.length);",
	"attempt('cookie', () => document.cookie);",
	"attempt('opener', () => window.opener && window.opener.sessionStorage.getItem('picloud.admin-token'));",
	"fetch('/api/admin/scripts').then(r => r.status, e => 'blocked ' + e.name).then(s => {",
	"  out.push('admin: ' + s);",
	"  document.getElementById('out').textContent = out.join(' | ');",
	'});',
	'</script></body></html>'
].join('\n');
// A Rhai back-tick string holds the page as it is (no escapes, no `${`).
const THIEF = `response(200, \`${PAGE}\`, #{ "content-type": "text/html; charset=utf-8" })`;

describe('origin isolation', () => {
	let server;
	let browser;
	let page;

	before(async () => {
		server = await startServer();
		browser = await startBrowser();
		page = browser.context.pages()[0] ?? (await browser.context.newPage());
		page.setDefaultTimeout(15_000);
	});

	after(async () => {
		await browser?.stop();
		await server?.stop();
	});

	it("a script's page cannot read the signed-in dashboard's token", async () => {
		const created = await admin(server.base, 'POST', '/api/admin/scripts', { name: 'thief', source: THIEF });
		assert.equal(created.status, 201, JSON.stringify(created.body));

		// Sign in to the dashboard: the token sits in this origin's session storage.
		await page.goto(`${server.base}/login`);
		await page.evaluate((t) => sessionStorage.setItem('picloud.admin-token', t), TOKEN);
		assert.equal(await page.evaluate(() => sessionStorage.getItem('picloud.admin-token')), TOKEN);

		// Open the script's page from the dashboard, as a user clicking a link would.
		const [thief] = await Promise.all([
			page.context().waitForEvent('page'),
			page.evaluate((url) => window.open(url), `${server.base}/api/execute/${created.body.id}`)
		]);
		await thief.waitForFunction(() => document.getElementById('out')?.textContent !== 'running');
		const report = await thief.locator('#out').innerText();

		assert.match(report, /origin: null/, report);
		assert.match(report, /session: blocked/, report);
		assert.match(report, /local: blocked/, report);
		assert.match(report, /cookie: blocked/, report);
		assert.doesNotMatch(report, new RegExp(TOKEN), report);
		assert.match(report, /opener: (null|blocked)/, report);
		// Its own request to the admin API carries no token.
		assert.match(report, /admin: (401|403|blocked)/, report);
		await thief.close();
	});
});
