import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { deleteRedisKeys } from '../tests/support/redis.js';
import { MemoryRateLimitStore, RateLimiter, RedisRateLimitStore, rateLimitedError, rateLimitHeaders, type RateLimitStore } from './rate-limit.js';

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('MemoryRateLimitStore', () => {
  it('counts hits in a window that starts at the first hit, then starts a new one', async () => {
    const store = new MemoryRateLimitStore();
    expect(await store.hit('a', 80)).toMatchObject({ count: 1 });
    expect(await store.hit('a', 80)).toMatchObject({ count: 2 });
    const { resetMs } = await store.hit('b', 80);
    expect(resetMs).toBeGreaterThan(0);
    expect(resetMs).toBeLessThanOrEqual(80);
    await sleep(100);
    expect(await store.hit('a', 80)).toMatchObject({ count: 1 });
    await store.close();
  });

  it('stays bounded: ended windows are swept, and the oldest go first past maxKeys', async () => {
    const store = new MemoryRateLimitStore({ maxKeys: 3 });
    for (const key of ['a', 'b', 'c']) await store.hit(key, 20);
    await sleep(30);
    store.sweep();
    expect(store.size).toBe(0);
    for (const key of ['a', 'b', 'c', 'd', 'e']) await store.hit(key, 60_000);
    expect(store.size).toBe(3);
    // 'a' was dropped, so it starts over; 'e' is still counted.
    expect(await store.hit('a', 60_000)).toMatchObject({ count: 1 });
    expect(await store.hit('e', 60_000)).toMatchObject({ count: 2 });
    await store.close();
  });
});

describe('RedisRateLimitStore', () => {
  const prefix = `test:rate-limit:${randomUUID()}:`;
  const clients: Redis[] = [];
  const client = () => {
    const redis = new Redis(REDIS_URL);
    clients.push(redis);
    return redis;
  };
  afterAll(async () => {
    await deleteRedisKeys(REDIS_URL, [prefix]);
    await Promise.all(clients.map((redis) => redis.quit()));
  });

  it('counts atomically under its prefix, shared by every client, and expires with the window', async () => {
    const [first, second] = [new RedisRateLimitStore(client(), prefix), new RedisRateLimitStore(client(), prefix)];
    const counts = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? first : second).hit('user:1', 60_000)));
    expect(counts.map((c) => c.count).sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    for (const { resetMs } of counts) {
      expect(resetMs).toBeGreaterThan(59_000);
      expect(resetMs).toBeLessThanOrEqual(60_000);
    }
    expect(await clients[0].pttl(`${prefix}user:1`)).toBeGreaterThan(59_000);

    // A burst on one key from one store: counted in a few calls, every hit with its own place.
    const own = client();
    const batching = new RedisRateLimitStore(own, prefix);
    const calls = vi.spyOn(own as unknown as { rateLimitHit: (...args: unknown[]) => Promise<unknown> }, 'rateLimitHit');
    const burst = await Promise.all(Array.from({ length: 50 }, () => batching.hit('user:2', 60_000)));
    expect(burst.map((c) => c.count).sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    expect(calls.mock.calls.length).toBeLessThanOrEqual(2);
    expect(calls.mock.calls.reduce((sum, call) => sum + Number(call[2]), 0)).toBe(50);

    await first.hit('short', 50);
    await sleep(80);
    expect(await clients[0].exists(`${prefix}short`)).toBe(0);
    expect(await first.hit('short', 50)).toMatchObject({ count: 1 });
  });
});

describe('RateLimiter', () => {
  const log = pino({ level: 'silent' });

  it('allows up to the limit and reports what is left', async () => {
    const limiter = new RateLimiter({ store: new MemoryRateLimitStore(), log, windowMs: 60_000 });
    const decisions = [];
    for (let i = 0; i < 3; i++) decisions.push(await limiter.consume('k', 2));
    expect(decisions.map((d) => [d?.allowed, d?.remaining])).toEqual([
      [true, 1],
      [true, 0],
      [false, 0],
    ]);
    expect(decisions[2]).toMatchObject({ limit: 2, resetSeconds: 60 });
    await limiter.close();
  });

  it('fails open when the store fails, warning at most once per interval', async () => {
    const warn = vi.fn();
    const broken: RateLimitStore = {
      hit: () => Promise.reject(new Error('ECONNREFUSED')),
      close: async () => {},
    };
    const limiter = new RateLimiter({ store: broken, log: { warn } as unknown as typeof log, warnEveryMs: 60_000 });
    for (let i = 0; i < 5; i++) expect(await limiter.consume('k', 1)).toBeUndefined();
    expect(warn).toHaveBeenCalledTimes(1);
  });
});

describe('headers and errors', () => {
  it('sends RateLimit-* always and Retry-After when refused', () => {
    expect(rateLimitHeaders({ allowed: true, limit: 10, remaining: 4, resetSeconds: 30 })).toEqual([
      ['ratelimit-limit', '10'],
      ['ratelimit-remaining', '4'],
      ['ratelimit-reset', '30'],
    ]);
    expect(rateLimitHeaders({ allowed: false, limit: 10, remaining: 0, resetSeconds: 30 })).toContainEqual(['retry-after', '30']);
  });

  it('refuses with HTTP 429 RATE_LIMITED carrying the headers', () => {
    const error = rateLimitedError({ allowed: false, limit: 10, remaining: 0, resetSeconds: 7 });
    expect(error.message).toBe('Too many requests; retry in 7 s.');
    const http = error.extensions.http as { status: number; headers: Map<string, string> };
    expect(error.extensions.code).toBe('RATE_LIMITED');
    expect(http.status).toBe(429);
    expect(http.headers.get('retry-after')).toBe('7');
    expect(http.headers.get('ratelimit-remaining')).toBe('0');
  });
});
