import type { Redis } from 'ioredis';
import { HeaderMap } from '@apollo/server';
import type { GraphQLError } from 'graphql';
import type { Logger } from 'pino';
import { appError } from '../lib/errors.js';

/**
 * Fixed-window rate limits. A window starts at a key's first hit and lasts `windowMs`; in Redis the
 * window's clock is Redis's own (PTTL), so replicas with skewed clocks still share one window.
 */
export interface RateLimitStore {
  /** Counts one hit on `key` and returns the count in the current window and the ms until it ends. */
  hit(key: string, windowMs: number): Promise<{ count: number; resetMs: number }>;
  close(): Promise<void>;
}

export interface RateLimitDecision {
  allowed: boolean;
  limit: number;
  remaining: number;
  /** Seconds until the window ends (at least 1). */
  resetSeconds: number;
}

/** One process only: a Map of windows, swept of ended ones so memory stays bounded. */
export class MemoryRateLimitStore implements RateLimitStore {
  private readonly windows = new Map<string, { count: number; resetAt: number }>();
  private readonly sweeper: NodeJS.Timeout;

  /**
   * @param options.maxKeys windows kept at most; past it the oldest are dropped (their callers get a
   *   fresh window, which fails open rather than growing without bound). @default 100000
   * @param options.sweepMs how often ended windows are removed. @default 60000
   */
  constructor(private readonly options: { maxKeys?: number; sweepMs?: number } = {}) {
    this.sweeper = setInterval(() => this.sweep(), options.sweepMs ?? 60_000).unref();
  }

  async hit(key: string, windowMs: number): Promise<{ count: number; resetMs: number }> {
    const now = Date.now();
    let window = this.windows.get(key);
    if (!window || window.resetAt <= now) {
      if (window) this.windows.delete(key);
      else if (this.windows.size >= (this.options.maxKeys ?? 100_000)) this.evict(now);
      window = { count: 0, resetAt: now + windowMs };
      this.windows.set(key, window);
    }
    window.count += 1;
    return { count: window.count, resetMs: window.resetAt - now };
  }

  /** Live windows (for tests and metrics). */
  get size(): number {
    return this.windows.size;
  }

  sweep(now = Date.now()): void {
    for (const [key, window] of this.windows) if (window.resetAt <= now) this.windows.delete(key);
  }

  private evict(now: number): void {
    this.sweep(now);
    // Insertion order is creation order, so the first keys are the windows that end soonest.
    const excess = this.windows.size - (this.options.maxKeys ?? 100_000) + 1;
    let dropped = 0;
    for (const key of this.windows.keys()) {
      if (dropped++ >= excess) break;
      this.windows.delete(key);
    }
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
    this.windows.clear();
  }
}

/** INCRBY and, on a new key, PEXPIRE, in one atomic round trip; returns the count and the ms left. */
const HIT_SCRIPT = `
local count = redis.call('INCRBY', KEYS[1], ARGV[2])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
`;

interface RedisWithHit {
  rateLimitHit(key: string, windowMs: number, hits: number): Promise<[number, number]>;
}

/** Hits on one key waiting for the call in flight to end; each gets its own place in the count. */
interface PendingHits {
  windowMs: number;
  waiters: { resolve: (hit: { count: number; resetMs: number }) => void; reject: (error: unknown) => void }[];
}

/**
 * Shared by every replica: keys under `prefix`, expiring with their window. One EVALSHA per key at
 * a time: hits on a key that arrive while its call is in flight are counted together by the next
 * (INCRBY n), and each gets the count it would have had alone (the n hits hold consecutive places),
 * so a busy caller costs Redis and the router one call per round trip rather than one per request.
 */
export class RedisRateLimitStore implements RateLimitStore {
  private readonly inFlight = new Set<string>();
  private readonly pending = new Map<string, PendingHits>();

  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {
    if (!('rateLimitHit' in redis)) redis.defineCommand('rateLimitHit', { numberOfKeys: 1, lua: HIT_SCRIPT });
  }

  hit(key: string, windowMs: number): Promise<{ count: number; resetMs: number }> {
    return new Promise((resolve, reject) => {
      let batch = this.pending.get(key);
      if (!batch) this.pending.set(key, (batch = { windowMs, waiters: [] }));
      batch.waiters.push({ resolve, reject });
      if (!this.inFlight.has(key)) this.send(key);
    });
  }

  private send(key: string): void {
    const batch = this.pending.get(key);
    if (!batch) return;
    this.pending.delete(key);
    this.inFlight.add(key);
    const n = batch.waiters.length;
    (this.redis as unknown as RedisWithHit).rateLimitHit(this.prefix + key, batch.windowMs, n).then(
      ([count, resetMs]) => {
        batch.waiters.forEach((waiter, i) => waiter.resolve({ count: count - n + i + 1, resetMs }));
      },
      (error: unknown) => {
        for (const waiter of batch.waiters) waiter.reject(error);
      },
    ).finally(() => {
      this.inFlight.delete(key);
      this.send(key);
    });
  }

  /** The Redis client belongs to whoever made it; the router closes its own. */
  async close(): Promise<void> {}
}

export interface RateLimiterOptions {
  store: RateLimitStore;
  log: Logger;
  /** @default 60000 */
  windowMs?: number;
  /** At most one "store unavailable" warning per this many ms, however many requests fail open. @default 10000 */
  warnEveryMs?: number;
}

/** Applies limits over a store; when the store fails (Redis down) requests are let through with a warning. */
export class RateLimiter {
  private readonly windowMs: number;
  private lastWarning = 0;
  private failuresSinceWarning = 0;

  constructor(private readonly options: RateLimiterOptions) {
    this.windowMs = options.windowMs ?? 60_000;
  }

  /** Counts a hit on `key` against `limit`; undefined when the store could not answer (fail open). */
  async consume(key: string, limit: number): Promise<RateLimitDecision | undefined> {
    let result: { count: number; resetMs: number };
    try {
      result = await this.options.store.hit(key, this.windowMs);
    } catch (error) {
      this.warn(error);
      return undefined;
    }
    return {
      allowed: result.count <= limit,
      limit,
      remaining: Math.max(0, limit - result.count),
      resetSeconds: Math.max(1, Math.ceil(result.resetMs / 1000)),
    };
  }

  private warn(error: unknown): void {
    this.failuresSinceWarning += 1;
    const now = Date.now();
    if (now - this.lastWarning < (this.options.warnEveryMs ?? 10_000)) return;
    this.options.log.warn({ err: error, failures: this.failuresSinceWarning }, 'rate-limit store unavailable; letting requests through');
    this.lastWarning = now;
    this.failuresSinceWarning = 0;
  }

  close(): Promise<void> {
    return this.options.store.close();
  }
}

/** `RateLimit-*` headers (IETF draft) for a decision; `Retry-After` too when refused. */
export function rateLimitHeaders(decision: RateLimitDecision): [string, string][] {
  const headers: [string, string][] = [
    ['ratelimit-limit', String(decision.limit)],
    ['ratelimit-remaining', String(decision.remaining)],
    ['ratelimit-reset', String(decision.resetSeconds)],
  ];
  if (!decision.allowed) headers.push(['retry-after', String(decision.resetSeconds)]);
  return headers;
}

/** HTTP 429 RATE_LIMITED, carrying its headers for Apollo Server to send. */
export function rateLimitedError(decision: RateLimitDecision, what = 'requests'): GraphQLError {
  const error = appError('RATE_LIMITED', `Too many ${what}; retry in ${decision.resetSeconds} s.`);
  error.extensions.http = { status: 429, headers: new HeaderMap(rateLimitHeaders(decision)) };
  return error;
}
