/**
 * The task event log a service uses: Redis when REDIS_URL is set (shared by every process), else
 * in this process's memory (`npm start` on a bare machine).
 */
import { Redis } from 'ioredis';
import type { Logger } from '../logger.js';
import { createMemoryTaskEventLog } from './memory.js';
import { createRedisTaskEventLog, SUBSCRIBER_CONNECTION_ERROR } from './redis.js';
import type { TaskEventLog } from './types.js';

export * from './types.js';
export { createMemoryTaskEventLog, type MemoryTaskEventLog, type MemoryTaskEventLogOptions } from './memory.js';
export { createRedisTaskEventLog, type RedisTaskEventLog, type RedisTaskEventLogOptions } from './redis.js';

export interface TaskEventLogConfig {
  /** Redis URL (`redis://` or `rediss://`). @default unset: in memory, one process only */
  redisUrl?: string;
  /** Prefix of every key and channel; the same for every process that shares the log. @default 'ap:' */
  prefix?: string;
  /** How long a task's events are kept after its last append (`EVENT_RETENTION_SECONDS`). @default 86400 */
  retentionSeconds?: number;
  /** Live events a stream holds for a consumer that does not keep up before cutting it off. @default 10000 */
  maxBufferedPerSubscriber?: number;
  /**
   * Send the commands of one event-loop turn as one pipeline (ioredis `enableAutoPipelining`): for
   * processes that append for many tasks at once (workers, the outbox relay). @default false
   */
  autoPipelining?: boolean;
  log: Logger;
}

export function createTaskEventLog(config: TaskEventLogConfig): TaskEventLog {
  const { log } = config;
  if (!config.redisUrl) {
    return createMemoryTaskEventLog({
      retentionSeconds: config.retentionSeconds,
      maxBufferedPerSubscriber: config.maxBufferedPerSubscriber,
      onListenerError: (error) => log.error({ err: error }, 'task event listener threw'),
    });
  }
  if (!/^rediss?:\/\//.test(config.redisUrl)) throw new Error('The task event log needs a redis:// or rediss:// URL (REDIS_URL).');
  const redis = new Redis(config.redisUrl, {
    connectionName: 'task-events',
    // Reconnect forever, backing off to 2 s; a command waits through at most three failed attempts.
    retryStrategy: (attempt) => Math.min(attempt * 100, 2000),
    maxRetriesPerRequest: 3,
    enableAutoPipelining: config.autoPipelining ?? false,
  });
  // ioredis reports every failed reconnect attempt, on both connections: one line per 10 s is enough.
  let lastWarning = 0;
  const warnUnavailable = (error: unknown): void => {
    if (Date.now() - lastWarning < 10_000) return;
    lastWarning = Date.now();
    log.warn({ err: error }, 'task event log: redis unavailable');
  };
  redis.on('error', warnUnavailable);
  return createRedisTaskEventLog({
    redis,
    ownsRedis: true,
    prefix: config.prefix,
    retentionSeconds: config.retentionSeconds,
    maxBufferedPerSubscriber: config.maxBufferedPerSubscriber,
    onError: (error, message) => {
      if (message === SUBSCRIBER_CONNECTION_ERROR) warnUnavailable(error);
      else log.warn({ err: error }, `task event log: ${message}`);
    },
  });
}
