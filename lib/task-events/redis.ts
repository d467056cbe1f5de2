/**
 * The task event log in Redis, shared by every process. Per task (`{id}` is a hash tag, so a
 * task's keys live in one cluster slot):
 *
 * - `<prefix>task:{<id>}:state`  hash: `seq` (last sequence), `attempt` (highest attempt),
 *   `final` (the final event's type, once there is one), `op`/`opFirst`/`opCount` (the last append
 *   call, so a call that ioredis resends after a reconnect is answered instead of applied twice);
 * - `<prefix>task:{<id>}:events` stream: one entry per event with ID `<sequence>-0` and the fields
 *   `sequence`, `type`, `attempt`, `at` and `delta` (absent when null);
 * - channel `<prefix>task-events:<id>`: each event as TaskEvent JSON, published by the same script.
 *
 * Both keys expire `retentionSeconds` after the task's last append.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { RedisPubSub } from 'graphql-redis-subscriptions';
import type { Redis } from 'ioredis';
import { RedisChannels } from './redis-channels.js';
import { assertAppendable, assertSequence, FunctionListener, TaskEventStream, type EventSource } from './stream.js';
import { FINAL_EVENT_TYPES, type AppendOptions, type TaskEvent, type TaskEventLog, type TaskEventType } from './types.js';

export interface RedisTaskEventLogOptions {
  /**
   * The connection for commands (append, read). Its `autoResendUnfulfilledCommands` (ioredis's
   * default) may resend an append after a reconnect; the script recognises the resent call.
   */
  redis: Redis;
  /**
   * The connection for subscriptions: a Redis connection used for nothing else, or a RedisPubSub
   * (its subscriber connection is used). Left open on close when given.
   * @default a duplicate of `redis`, made on the first subscription and closed with the log
   */
  subscriber?: Redis | RedisPubSub;
  /** Prefix of every key and channel. @default 'ap:' */
  prefix?: string;
  /** How long a task's log is kept after its last append. @default 86400 */
  retentionSeconds?: number;
  /** Live events a stream holds for a consumer that does not keep up before cutting it off. @default 10000 */
  maxBufferedPerSubscriber?: number;
  /**
   * How long an append keeps trying while Redis cannot be reached (a restart, a failover) before it
   * fails: a worker's stream pauses through a short outage instead of failing its task.
   * @default 10000
   */
  appendRetryMs?: number;
  /** Close `redis` on close. @default false */
  ownsRedis?: boolean;
  /** Where failures nobody awaits are reported (a gap that could not be filled, a malformed message). */
  onError?: (error: unknown, message: string) => void;
}

export interface RedisTaskEventLog extends TaskEventLog {
  /** How many tasks this process is subscribed to (for metrics, and tests of leaks). */
  subscribedTaskCount(): number;
}

/** The `onError` message for errors of the subscriber connection the log made itself (reported on every reconnect attempt). */
export const SUBSCRIBER_CONNECTION_ERROR = 'subscriber connection error';

type NewEvent = { type: TaskEventType; attempt: number; delta?: string | null };

const finalTypesLua = [...FINAL_EVENT_TYPES].map((type) => `${type} = true`).join(', ');

/**
 * KEYS: state hash, event stream.
 * ARGV: channel, task id, retention seconds, onlyIfEmpty ('1' or '0'), maxAttempt ('' for none),
 * call id, minSequence ('' for none), restore ('' for none, '?' to report a lost log, else the
 * number R of events to restore), then five per restored event: sequence, type, attempt, at, delta;
 * then four per new event: type, attempt, at, delta (deltas: '' for null, else 's' followed by the
 * text). Returns {first sequence, number appended}; appends nothing after a final event, when the
 * log is not empty and onlyIfEmpty is '1', and stops before an event when the highest attempt
 * recorded exceeds maxAttempt. A log whose last sequence is below minSequence was lost: with
 * restore '?' the script returns {-1, last sequence} and changes nothing; with restored events it
 * writes back (and publishes) those above what the log holds, then numbering resumes after
 * minSequence.
 */
const APPEND_SCRIPT = `
local state, events = KEYS[1], KEYS[2]
local channel, taskId, ttl, onlyIfEmpty, op = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[6]
local maxAttempt = tonumber(ARGV[5])
local minSequence = tonumber(ARGV[7])
local final = { ${finalTypesLua} }
local h = redis.call('HMGET', state, 'seq', 'attempt', 'final', 'op', 'opFirst', 'opCount')
if h[4] == op then return { tonumber(h[5]), tonumber(h[6]) } end
local seq = tonumber(h[1]) or 0
local attempt = tonumber(h[2]) or 0
if h[3] or (onlyIfEmpty == '1' and seq > 0) then return { seq + 1, 0 } end
-- A new log: drop a stream that outlived its state by a moment at expiry, or IDs would collide.
if seq == 0 then redis.call('DEL', events) end
-- Writes one event to the stream and publishes it; rawDelta is '' for null, else 's' and the text.
local function add(eventSeq, eventType, eventAttempt, at, rawDelta)
  local delta = cjson.null
  if #rawDelta > 0 then
    delta = string.sub(rawDelta, 2)
    redis.call('XADD', events, eventSeq .. '-0', 'sequence', eventSeq, 'type', eventType, 'attempt', eventAttempt, 'at', at, 'delta', delta)
  else
    redis.call('XADD', events, eventSeq .. '-0', 'sequence', eventSeq, 'type', eventType, 'attempt', eventAttempt, 'at', at)
  end
  redis.call('PUBLISH', channel, cjson.encode({ taskId = taskId, sequence = eventSeq, type = eventType, attempt = eventAttempt, delta = delta, at = at }))
  if eventAttempt > attempt then attempt = eventAttempt end
end
local restore = ARGV[8]
local firstEvent = 9
if restore ~= '' and restore ~= '?' then firstEvent = 9 + tonumber(restore) * 5 end
local restored = false
if minSequence and seq < minSequence then
  -- A lost log: the caller may hold what it appended; else go on after the last sequence it knows was used.
  if restore == '?' then return { -1, seq } end
  for i = 9, firstEvent - 1, 5 do
    local rseq = tonumber(ARGV[i])
    if rseq > seq and rseq <= minSequence then
      add(rseq, ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3], ARGV[i + 4])
      seq = rseq
      restored = true
    end
  end
  seq = minSequence
end
local first = seq + 1
local n, finalType = 0, nil
for i = firstEvent, #ARGV, 4 do
  if maxAttempt and attempt > maxAttempt then break end
  local eventType = ARGV[i]
  seq = seq + 1
  add(seq, eventType, tonumber(ARGV[i + 1]), ARGV[i + 2], ARGV[i + 3])
  n = n + 1
  if final[eventType] then finalType = eventType break end
end
if n == 0 then
  if restored then
    redis.call('HSET', state, 'seq', seq, 'attempt', attempt)
    redis.call('EXPIRE', state, ttl)
    redis.call('EXPIRE', events, ttl)
  end
  return { first, 0 }
end
if finalType then
  redis.call('HSET', state, 'seq', seq, 'attempt', attempt, 'op', op, 'opFirst', first, 'opCount', n, 'final', finalType)
else
  redis.call('HSET', state, 'seq', seq, 'attempt', attempt, 'op', op, 'opFirst', first, 'opCount', n)
end
redis.call('EXPIRE', state, ttl)
redis.call('EXPIRE', events, ttl)
return { first, n }
`;
const APPEND_SHA = createHash('sha1').update(APPEND_SCRIPT).digest('hex');

/** A delta as APPEND_SCRIPT takes it: '' for null, else 's' followed by the text (so '' stays distinct). */
const deltaArg = (delta: string | null | undefined): string => (delta == null ? '' : `s${delta}`);

export function createRedisTaskEventLog(options: RedisTaskEventLogOptions): RedisTaskEventLog {
  const { redis } = options;
  const prefix = options.prefix ?? 'ap:';
  const retentionSeconds = options.retentionSeconds ?? 86_400;
  const maxBuffered = options.maxBufferedPerSubscriber ?? 10_000;
  const onError = options.onError ?? (() => {});
  if (!Number.isSafeInteger(retentionSeconds) || retentionSeconds < 1) throw new RangeError(`retentionSeconds must be a whole number ≥ 1, got ${retentionSeconds}.`);
  if (!Number.isSafeInteger(maxBuffered) || maxBuffered < 1) throw new RangeError(`maxBufferedPerSubscriber must be a whole number ≥ 1, got ${maxBuffered}.`);

  const stateKey = (taskId: string) => `${prefix}task:{${taskId}}:state`;
  const eventsKey = (taskId: string) => `${prefix}task:{${taskId}}:events`;
  const channelOf = (taskId: string) => `${prefix}task-events:${taskId}`;
  // Identifies one append call across a resend: unique per log instance and call.
  const callPrefix = randomBytes(6).toString('base64url');
  let calls = 0;
  let closed = false;

  async function appendEvents(taskId: string, events: NewEvent[], appendOptions: AppendOptions = {}): Promise<TaskEvent[]> {
    if (closed) throw new Error('The task event log is closed.');
    for (const event of events) assertAppendable(event);
    if (events.length === 0) return [];
    const at = new Date().toISOString();
    const args: (string | number)[] = [
      stateKey(taskId),
      eventsKey(taskId),
      channelOf(taskId),
      taskId,
      retentionSeconds,
      appendOptions.onlyIfEmpty ? '1' : '0',
      appendOptions.maxAttempt ?? '',
      `${callPrefix}:${++calls}`,
      appendOptions.minSequence ?? '',
      appendOptions.restore ? '?' : '',
    ];
    const restoreAt = args.length - 1;
    for (const event of events) args.push(event.type, event.attempt, at, deltaArg(event.delta));
    let [first, count] = (await evalAppend(args)) as [number, number];
    if (first === -1) {
      // The log was lost (Redis restarted without persistence): send again with what the caller
      // appended before, to be written back under their own sequences ahead of the new events.
      const restored = appendOptions.restore!();
      const restoreArgs: (string | number)[] = [restored.length];
      for (const event of restored) restoreArgs.push(event.sequence, event.type, event.attempt, event.at, deltaArg(event.delta));
      args.splice(restoreAt, 1, ...restoreArgs);
      args[restoreAt - 2] = `${callPrefix}:${++calls}`;
      [first, count] = (await evalAppend(args)) as [number, number];
    }
    const appended: TaskEvent[] = [];
    for (let i = 0; i < count; i++) {
      const event = events[i];
      appended.push(Object.freeze({ taskId, sequence: first + i, type: event.type, attempt: event.attempt, delta: event.delta ?? null, at }));
    }
    return appended;
  }

  const appendRetryMs = options.appendRetryMs ?? 10_000;

  /** Sends the append, again (the same call id, so it is applied once) while Redis is unreachable. */
  async function evalAppend(args: (string | number)[]): Promise<unknown> {
    const deadline = Date.now() + appendRetryMs;
    for (let wait = 100; ; wait = Math.min(wait * 2, 1000)) {
      try {
        return await evalAppendOnce(args);
      } catch (error) {
        // A reply error (a script error) is final; anything else is the connection.
        if (closed || (error instanceof Error && error.name === 'ReplyError') || Date.now() + wait > deadline) throw error;
        await new Promise((resolve) => setTimeout(resolve, wait));
      }
    }
  }

  async function evalAppendOnce(args: (string | number)[]): Promise<unknown> {
    try {
      return await redis.evalsha(APPEND_SHA, 2, ...args);
    } catch (error) {
      // The script cache is empty after a Redis restart or SCRIPT FLUSH: send the script itself once.
      if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error;
      return redis.eval(APPEND_SCRIPT, 2, ...args);
    }
  }

  async function read(taskId: string, afterSequence: number): Promise<TaskEvent[]> {
    // IDs are `<sequence>-0`, so the range starts right after `afterSequence`.
    const entries = await redis.xrange(eventsKey(taskId), `${afterSequence + 1}-0`, '+');
    const events: TaskEvent[] = new Array(entries.length);
    for (let i = 0; i < entries.length; i++) events[i] = parseEntry(taskId, entries[i][1]);
    return events;
  }

  let channels: RedisChannels | null = null;
  const hub = (): RedisChannels => {
    if (closed) throw new Error('The task event log is closed.');
    channels ??= new RedisChannels({
      subscriber: options.subscriber ?? openSubscriber(),
      ownsSubscriber: !options.subscriber,
      channelOf,
      read,
      onError,
    });
    return channels;
  };

  function openSubscriber(): Redis {
    // Subscriptions wait for a reconnect rather than fail: the channels re-read what they missed.
    // No ready check and no CLIENT SETNAME: either, sent on a reconnect after a queued SUBSCRIBE,
    // fails with "Connection in subscriber mode" and breaks every stream of the process.
    const subscriber = redis.duplicate({ connectionName: undefined, enableReadyCheck: false, maxRetriesPerRequest: null, enableOfflineQueue: true });
    subscriber.on('error', (error: unknown) => onError(error, SUBSCRIBER_CONNECTION_ERROR));
    return subscriber;
  }

  async function lastSequence(taskId: string): Promise<number> {
    return Number((await redis.hget(stateKey(taskId), 'seq')) ?? 0);
  }

  const source: EventSource = {
    read,
    lastSequence,
    listen: (taskId, listener) => hub().listen(taskId, listener),
    unlisten: (taskId, listener) => channels?.unlisten(taskId, listener),
  };

  return {
    async append(taskId, event, appendOptions) {
      return (await appendEvents(taskId, [event], appendOptions))[0] ?? null;
    },
    appendMany: appendEvents,
    async read(taskId, afterSequence) {
      assertSequence('afterSequence', afterSequence);
      return read(taskId, afterSequence);
    },
    lastSequence,
    stream(taskId, afterSequence, signal) {
      assertSequence('afterSequence', afterSequence);
      return new TaskEventStream(source, taskId, afterSequence, maxBuffered, signal);
    },
    async subscribe(taskId, listener) {
      const wrapped = new FunctionListener(listener, (error) => onError(error, 'task event listener threw'));
      await source.listen(taskId, wrapped);
      try {
        // "From now on": what the log held once subscribed is not news (it may arrive again after a reconnect).
        const floor = await lastSequence(taskId);
        if (wrapped.last === 0) wrapped.last = floor;
      } catch (error) {
        source.unlisten(taskId, wrapped);
        throw error;
      }
      return async () => source.unlisten(taskId, wrapped);
    },
    async ping() {
      if (closed) return false;
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<false>((resolve) => (timer = setTimeout(resolve, 1000, false)));
      try {
        return await Promise.race([redis.ping().then((reply) => reply === 'PONG'), timeout]);
      } catch {
        return false;
      } finally {
        clearTimeout(timer);
      }
    },
    async close() {
      if (closed) return;
      closed = true;
      await channels?.close();
      if (options.ownsRedis) {
        try {
          await redis.quit();
        } catch {
          redis.disconnect();
        }
      }
    },
    subscribedTaskCount: () => channels?.size ?? 0,
  };
}

function parseEntry(taskId: string, fields: string[]): TaskEvent {
  let sequence = 0;
  let type = '' as TaskEventType;
  let attempt = 0;
  let delta: string | null = null;
  let at = '';
  for (let i = 0; i < fields.length; i += 2) {
    const value = fields[i + 1];
    switch (fields[i]) {
      case 'sequence':
        sequence = Number(value);
        break;
      case 'type':
        type = value as TaskEventType;
        break;
      case 'attempt':
        attempt = Number(value);
        break;
      case 'delta':
        delta = value;
        break;
      case 'at':
        at = value;
        break;
    }
  }
  return Object.freeze({ taskId, sequence, type, attempt, delta, at });
}
