import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../logger.js';
import { collect, REDIS_TEST_URL } from './test-harness.js';
import { createTaskEventLog } from './index.js';

const log = createLogger('task-events-test', 'silent');

describe('createTaskEventLog', () => {
  it('keeps the log in memory without a Redis URL', async () => {
    const events = createTaskEventLog({ log });
    const id = randomUUID();
    await events.appendMany(id, [{ type: 'QUEUED', attempt: 1 }, { type: 'SUCCEEDED', attempt: 1 }]);
    expect((await collect(events.stream(id, 0))).map((event) => event.type)).toEqual(['QUEUED', 'SUCCEEDED']);
    expect(await events.ping()).toBe(true);
    await events.close();
  });

  it('uses Redis with its own connections, closed with the log', async () => {
    const prefix = `test:task-events:${randomUUID().slice(0, 8)}:`;
    const events = createTaskEventLog({ redisUrl: REDIS_TEST_URL, prefix, retentionSeconds: 60, log });
    const id = randomUUID();
    const streaming = collect(events.stream(id, 0));
    await events.appendMany(id, [{ type: 'QUEUED', attempt: 1 }, { type: 'CANCELLED', attempt: 1 }]);
    expect((await streaming).map((event) => event.type)).toEqual(['QUEUED', 'CANCELLED']);
    expect(await events.ping()).toBe(true);
    const admin = new Redis(REDIS_TEST_URL);
    try {
      expect(await admin.ttl(`${prefix}task:{${id}}:events`)).toBeLessThanOrEqual(60);
      await events.close();
      expect(await events.ping()).toBe(false);
      await admin.del(`${prefix}task:{${id}}:events`, `${prefix}task:{${id}}:state`);
    } finally {
      await admin.quit();
    }
  });

  it('refuses a URL that is not redis:// or rediss://', () => {
    expect(() => createTaskEventLog({ redisUrl: 'http://localhost:6379', log })).toThrow(/redis:\/\/ or rediss:\/\//);
  });
});
