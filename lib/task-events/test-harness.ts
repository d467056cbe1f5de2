/**
 * Test helpers for the task event log: both implementations behind one shape, against the real
 * Redis on REDIS_TEST_URL (default 127.0.0.1:6379) under a random key prefix per test file.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { expect, vi } from 'vitest';
import { createMemoryTaskEventLog } from './memory.js';
import { createRedisTaskEventLog, type RedisTaskEventLogOptions } from './redis.js';
import type { TaskEvent, TaskEventLog } from './types.js';

export const REDIS_TEST_URL = process.env.REDIS_TEST_URL ?? 'redis://127.0.0.1:6379';

export type TestLog = TaskEventLog & { subscribedTaskCount(): number };

export interface LogOptions {
  maxBufferedPerSubscriber?: number;
  retentionSeconds?: number;
}

export interface Harness {
  readonly name: 'memory' | 'redis';
  /** A log for subscribers (one per test file and options, like one process). */
  open(options?: LogOptions): TestLog;
  /** Another writer on the same store (its own connection, for Redis). */
  writer(): TaskEventLog;
  /** Live subscriptions still held for these tasks: Redis PUBSUB NUMSUB, or the memory log's listeners. */
  subscriptions(log: TestLog, taskIds: string[]): Promise<number>;
  /** Checks that the task's log will expire within `retentionSeconds`. */
  expectExpiry(log: TestLog, taskId: string, retentionSeconds: number): Promise<void>;
  /** Closes everything the tests opened and deletes the test keys. */
  dispose(): Promise<void>;
}

export const taskId = (): string => randomUUID();

/** Disposers run after each test, last first. */
export function disposers(): { add(dispose: () => unknown): void; drain(): Promise<void> } {
  const list: (() => unknown)[] = [];
  return {
    add: (dispose) => void list.push(dispose),
    async drain() {
      while (list.length) await list.pop()!();
    },
  };
}

export function memoryHarness(): Harness {
  const logs: TestLog[] = [];
  const shared = createMemoryTaskEventLog();
  logs.push(shared);
  return {
    name: 'memory',
    open(options = {}) {
      if (Object.keys(options).length === 0) return shared;
      const log = createMemoryTaskEventLog(options);
      logs.push(log);
      return log;
    },
    writer: () => shared,
    async subscriptions(log, taskIds) {
      // The memory log holds no per-task count publicly; its subscribed-task count covers these tests.
      void taskIds;
      return log.subscribedTaskCount();
    },
    async expectExpiry(log, id, retentionSeconds) {
      vi.useFakeTimers({ toFake: ['Date'] });
      try {
        vi.setSystemTime(Date.now() + retentionSeconds * 1000 - 1000);
        expect((await log.read(id, 0)).length).toBeGreaterThan(0);
        vi.setSystemTime(Date.now() + 2000);
        expect(await log.read(id, 0)).toEqual([]);
        expect(await log.lastSequence(id)).toBe(0);
      } finally {
        vi.useRealTimers();
      }
    },
    async dispose() {
      for (const log of logs) await log.close();
    },
  };
}

export function redisHarness(): Harness & { prefix: string; admin: Redis; connect(name?: string): Redis; openWith(options: Partial<RedisTaskEventLogOptions>): TestLog } {
  const prefix = `test:task-events:${randomUUID().slice(0, 8)}:`;
  const connections: Redis[] = [];
  const logs: TaskEventLog[] = [];
  const connect = (name?: string): Redis => {
    const redis = new Redis(REDIS_TEST_URL, { connectionName: name, maxRetriesPerRequest: 3 });
    redis.on('error', () => {});
    connections.push(redis);
    return redis;
  };
  const admin = connect();
  const opened = new Map<string, TestLog>();
  const openWith = (options: Partial<RedisTaskEventLogOptions>): TestLog => {
    const log = createRedisTaskEventLog({ redis: connect(), prefix, ...options });
    logs.push(log);
    return log;
  };
  return {
    name: 'redis',
    prefix,
    admin,
    connect,
    openWith,
    open(options = {}) {
      const key = JSON.stringify(options);
      let log = opened.get(key);
      if (!log) opened.set(key, (log = openWith(options)));
      return log;
    },
    writer() {
      const log = createRedisTaskEventLog({ redis: connect(), prefix });
      logs.push(log);
      return log;
    },
    async subscriptions(_log, taskIds) {
      if (taskIds.length === 0) return 0;
      const reply = (await admin.pubsub('NUMSUB', ...taskIds.map((id) => `${prefix}task-events:${id}`))) as (string | number)[];
      let total = 0;
      for (let i = 1; i < reply.length; i += 2) total += Number(reply[i]);
      return total;
    },
    async expectExpiry(_log, id, retentionSeconds) {
      for (const key of [`${prefix}task:{${id}}:state`, `${prefix}task:{${id}}:events`]) {
        const ttl = await admin.ttl(key);
        expect(ttl, key).toBeGreaterThan(0);
        expect(ttl, key).toBeLessThanOrEqual(retentionSeconds);
      }
    },
    async dispose() {
      for (const log of logs) await log.close();
      let cursor = '0';
      do {
        const [next, keys] = await admin.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
        cursor = next;
        if (keys.length) await admin.del(...keys);
      } while (cursor !== '0');
      await Promise.all(connections.map((redis) => redis.quit().catch(() => redis.disconnect())));
    },
  };
}

/** Collects a stream into an array of sequences (and the events). */
export async function collect(stream: AsyncIterable<TaskEvent>, onEvent?: (event: TaskEvent) => void): Promise<TaskEvent[]> {
  const events: TaskEvent[] = [];
  for await (const event of stream) {
    events.push(event);
    onEvent?.(event);
  }
  return events;
}

export const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

export async function until(condition: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
