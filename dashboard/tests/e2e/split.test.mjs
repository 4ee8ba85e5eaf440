// With PICLOUD_ADMIN_BIND the dashboard lives on the admin address and the
// scripts on the public one: the dashboard must still say the server is
// ready, and the try-it panel must explain why a script is not found there.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { admin, screenshot, startBrowser, startServer, TOKEN } from './harness.mjs';

describe('dashboard on a separate admin address', () => {
	let server;
	let browser;
	let page;

	before(async () => {
		server = await startServer({ PICLOUD_ADMIN_BIND: '127.0.0.1:0' });
		assert.ok(server.adminBase, 'picloud announces the admin address');
		browser = await startBrowser();
		page = browser.context.pages()[0] ?? (await browser.context.newPage());
		page.setDefaultTimeout(15_000);
	});

	after(async () => {
		await browser?.stop();
		await server?.stop();
	});

	it('is served on the admin address only', async () => {
		assert.equal((await fetch(`${server.adminBase}/scripts`)).status, 200);
		assert.equal((await fetch(`${server.base}/scripts`)).status, 404);
	});

	it('reports readiness from the pool and explains the try-it 404', async () => {
		const created = await admin(server.adminBase, 'POST', '/api/admin/scripts', { name: 'hi', source: '"hi"' });
		assert.equal(created.status, 201);
		await page.goto(`${server.adminBase}/login`);
		await page.evaluate((t) => sessionStorage.setItem('picloud.admin-token', t), TOKEN);
		await page.goto(`${server.adminBase}/scripts/${created.body.id}`);
		await page.getByTestId('health').getByText('Server ready').waitFor();

		await page.getByTestId('try-send').click();
		await page.getByTestId('try-wrong-address').waitFor();
		assert.match(await page.getByTestId('try-status').innerText(), /^404/);
		await screenshot(page, '15-admin-address-try-it');

		// The script itself answers on the public address.
		const r = await fetch(`${server.base}/api/execute/${created.body.id}`);
		assert.equal(await r.text(), 'hi');
	});
});
