import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '../support/client.js';
import { errorCodes } from '../support/graphql.js';
import { startPlatform, type Platform } from '../support/platform.js';

/** Brute force against login is cut off per IP, in Redis, with the standard headers. */
let platform: Platform;

beforeAll(async () => {
  platform = await startPlatform('e2e_ratelimit', { env: { RATE_LIMIT_AUTH_PER_MINUTE: '5', RATE_LIMIT_ANON_PER_MINUTE: '1000' } });
}, 120_000);
afterAll(async () => {
  await platform?.stop();
});

describe('rate limits', () => {
  it('answers 429 RATE_LIMITED with Retry-After and RateLimit-* headers after 5 login attempts', async () => {
    const anonymous = new Client(platform.url);
    const email = `victim-${randomUUID().slice(0, 8)}@example.com`;
    const attempts = [];
    for (let i = 0; i < 7; i++) {
      attempts.push(await anonymous.request(`mutation ($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }`, { e: email, p: `guess-${i}-password` }));
    }
    expect(attempts.slice(0, 5).map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
    expect(attempts.slice(0, 5).every((r) => errorCodes(r)[0] === 'UNAUTHENTICATED')).toBe(true);
    const limited = attempts[6];
    expect(limited.status).toBe(429);
    expect(errorCodes(limited)).toEqual(['RATE_LIMITED']);
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(limited.headers.get('ratelimit-limit')).toBeTruthy();
    expect(limited.headers.get('ratelimit-remaining')).toBe('0');
    expect(limited.headers.get('ratelimit-reset')).toBeTruthy();
    expect((await fetch(`${platform.routerBase}/healthz`)).status).toBe(200);
  });
});
