import { describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import type { TaskEventLog } from '../lib/task-events/types.js';
import { generateJwtKeyPair } from '../lib/jwt-keys.js';
import { routerConfigFromEnv } from './config.js';
import { missingRedisWarning } from './server.js';

const BASE = { INTERNAL_SECRET: 'x'.repeat(32), JWT_PUBLIC_KEY: generateJwtKeyPair().publicKey };
const config = (env: Record<string, string> = {}) => routerConfigFromEnv({ ...BASE, ...env }, { supergraphSdl: 'schema { query: Query }' });
// Only their presence matters to the decision.
const redis = {} as Redis;
const eventLog = {} as TaskEventLog;

describe('missingRedisWarning', () => {
  it('warns a router on its own without REDIS_URL that rate limits and task events stay in its process', () => {
    const warning = missingRedisWarning(config());
    expect(warning).toMatch(/^REDIS_URL is unset: /);
    expect(warning).toContain('rate limits are counted in this router process only');
    expect(warning).toContain('taskEvents subscriptions cannot see the events that task workers in other processes write');
  });

  it('says nothing with REDIS_URL, or in npm start\'s embedded platform where in-process stores are right', () => {
    expect(missingRedisWarning(config({ REDIS_URL: 'redis://127.0.0.1:6379' }))).toBeUndefined();
    expect(missingRedisWarning(config(), { eventLog, embedded: true })).toBeUndefined();
  });

  it('names only what is actually kept in the process', () => {
    const eventsOnly = missingRedisWarning(config({ RATE_LIMIT_ENABLED: 'false' }));
    expect(eventsOnly).not.toContain('rate limits');
    expect(eventsOnly).toContain('taskEvents');
    const limitsOnly = missingRedisWarning(config(), { eventLog });
    expect(limitsOnly).toContain('rate limits');
    expect(limitsOnly).not.toContain('taskEvents');
    expect(missingRedisWarning(config(), { redis, eventLog })).toBeUndefined();
  });
});
