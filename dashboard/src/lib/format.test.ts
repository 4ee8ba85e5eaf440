import { describe, expect, it } from 'vitest';
import { ago, bytes, count, micros, percent, shortId } from './format';

describe('format', () => {
	it('scales durations', () => {
		expect(micros(850)).toBe('850 µs');
		expect(micros(12_400)).toBe('12.4 ms');
		expect(micros(1_500)).toBe('1.5 ms');
		expect(micros(3_204_000)).toBe('3.20 s');
		expect(micros(null)).toBe('—');
		expect(micros(Number.NaN)).toBe('—');
	});

	it('scales bytes in binary units', () => {
		expect(bytes(512)).toBe('512 B');
		expect(bytes(1536)).toBe('1.5 KiB');
		expect(bytes(64 * 1024 * 1024)).toBe('64 MiB');
		expect(bytes(undefined)).toBe('—');
	});

	it('abbreviates counts and percentages', () => {
		expect(count(987)).toBe('987');
		expect(count(12_345)).toBe('12.3k');
		expect(count(4_500_000)).toBe('4.5M');
		expect(percent(0)).toBe('0%');
		expect(percent(0.025)).toBe('2.5%');
		expect(percent(0.0004)).toBe('<0.1%');
		expect(percent(1)).toBe('100%');
	});

	it('says how long ago', () => {
		const now = Date.parse('2026-01-10T12:00:00Z');
		expect(ago('2026-01-10T11:59:58Z', now)).toBe('just now');
		expect(ago('2026-01-10T11:59:00Z', now)).toBe('1 min ago');
		expect(ago('2026-01-10T09:00:00Z', now)).toBe('3 h ago');
		expect(ago('2025-01-01T00:00:00Z', now)).toBe('2025-01-01');
		expect(ago('not a date', now)).toBe('—');
	});

	it('shortens ids', () => {
		expect(shortId('3f6c1a2b-0000-4000-8000-000000000000')).toBe('3f6c1a2b');
	});
});
