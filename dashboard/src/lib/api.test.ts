import { describe, expect, it } from 'vitest';
import { describeError, EndpointMissing, isMissingEndpoint, NetworkError } from './api';

describe('api errors', () => {
	it('tells a missing endpoint from a missing thing', () => {
		// The admin API's fallback and the dashboard's catch-all.
		expect(isMissingEndpoint(404, 'no such admin endpoint')).toBe(true);
		expect(isMissingEndpoint(404, 'no such endpoint')).toBe(true);
		expect(isMissingEndpoint(405, '')).toBe(true);
		// A script or an invocation that does not exist is not a missing endpoint.
		expect(isMissingEndpoint(404, 'no script `nope`')).toBe(false);
		expect(isMissingEndpoint(404, 'no invocation 1 (it may not be written yet, or was pruned)')).toBe(false);
		expect(isMissingEndpoint(400, 'no such endpoint')).toBe(false);
	});

	it('describes failures in one sentence', () => {
		expect(describeError(new EndpointMissing('/api/admin/pool'))).toBe('/api/admin/pool is not available on this server');
		expect(describeError(new NetworkError(new TypeError('fetch failed')))).toMatch(/could not be reached/);
		expect(describeError('odd')).toBe('odd');
	});
});
