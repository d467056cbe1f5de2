import { describe, expect, it } from 'vitest';
import { isRetryableStatus, retryAfterMs } from './errors.js';

describe('retry hints', () => {
  it('reads retry-after-ms, Retry-After in seconds and as an HTTP date', () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    expect(retryAfterMs(new Headers({ 'retry-after': '2' }), now)).toBe(2_000);
    expect(retryAfterMs(new Headers({ 'retry-after': '0.5' }), now)).toBe(500);
    expect(retryAfterMs(new Headers({ 'retry-after-ms': '250', 'retry-after': '9' }), now)).toBe(250);
    expect(retryAfterMs(new Headers({ 'retry-after': 'Thu, 01 Jan 2026 00:00:03 GMT' }), now)).toBe(3_000);
    expect(retryAfterMs(new Headers({ 'retry-after': 'Wed, 31 Dec 2025 23:59:00 GMT' }), now)).toBe(0);
    expect(retryAfterMs(new Headers({ 'retry-after': 'soon' }), now)).toBeUndefined();
    expect(retryAfterMs(new Headers(), now)).toBeUndefined();
    expect(retryAfterMs(undefined, now)).toBeUndefined();
  });

  it('retries 408, 409, 429 and 5xx, not other statuses, unless x-should-retry says otherwise', () => {
    expect([400, 401, 403, 404, 413, 422].map((s) => isRetryableStatus(s))).toEqual([false, false, false, false, false, false]);
    expect([408, 409, 429, 500, 502, 503, 529].map((s) => isRetryableStatus(s))).toEqual([true, true, true, true, true, true, true]);
    expect(isRetryableStatus(500, new Headers({ 'x-should-retry': 'false' }))).toBe(false);
    expect(isRetryableStatus(400, new Headers({ 'x-should-retry': 'true' }))).toBe(true);
  });
});
