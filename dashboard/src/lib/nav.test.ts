import { describe, expect, it } from 'vitest';
import { safeNext } from './nav';

describe('safeNext', () => {
	it('keeps paths on this site', () => {
		expect(safeNext('/scripts/abc/invocations?inv=1')).toBe('/scripts/abc/invocations?inv=1');
		expect(safeNext(null)).toBe('/');
	});

	it('refuses anything that could leave the site or loop', () => {
		for (const bad of ['//evil.example', '/\\evil.example', 'https://evil.example', 'javascript:alert(1)', '/login?next=/x']) {
			expect(safeNext(bad)).toBe('/');
		}
	});
});
