/**
 * What only the Redis log has to get right: other processes, a subscriber connection that drops,
 * lost messages, the script cache, resent appends, and RedisPubSub as the transport.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { RedisPubSub } from 'graphql-redis-subscriptions';
import type { Redis } from 'ioredis';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { collect, disposers, range, REDIS_TEST_URL, redisHarness, taskId, until } from './test-harness.js';
import type { TaskEvent, TaskEventLog } from './types.js';

const token = (delta: string) => ({ type: 'TOKEN' as const, attempt: 1, delta });

describe('Redis task event log', () => {
  const harness = redisHarness();
  const cleanup = disposers();
  afterEach(() => cleanup.drain());
  afterAll(() => harness.dispose());

  /** A subscriber connection this test can find in CLIENT LIST and kill. */
  function killableSubscriber(): { subscriber: Redis; kill(): Promise<void>; reconnects(): number } {
    const name = `te-sub-${randomUUID().slice(0, 8)}`;
    const subscriber = harness.connect(name);
    let reconnects = 0;
    subscriber.on('reconnecting', () => reconnects++);
    return {
      subscriber,
      reconnects: () => reconnects,
      async kill() {
        // Only this connection (other test files share the server), once it is back from the last kill.
        let id: string | undefined;
        await until(async () => {
          if (subscriber.status !== 'ready') return false;
          const clients = (await harness.admin.client('LIST')) as string;
          const line = clients.split('\n').find((entry) => entry.includes(` name=${name} `));
          id = /\bid=(\d+)/.exec(line ?? '')?.[1];
          return id !== undefined;
        });
        await harness.admin.client('KILL', 'ID', id!);
      },
    };
  }

  it('streams events that another process appends', async () => {
    const log = harness.open();
    const id = taskId();
    const streaming = collect(log.stream(id, 0));
    await until(() => log.subscribedTaskCount() === 1);
    const redisModule = fileURLToPath(new URL('./redis.ts', import.meta.url));
    const script = `
      import { Redis } from 'ioredis';
      import { createRedisTaskEventLog } from ${JSON.stringify(redisModule)};
      const redis = new Redis(${JSON.stringify(REDIS_TEST_URL)});
      const log = createRedisTaskEventLog({ redis, prefix: ${JSON.stringify(harness.prefix)} });
      await log.append(${JSON.stringify(id)}, { type: 'QUEUED', attempt: 1 });
      await log.appendMany(${JSON.stringify(id)}, [{ type: 'STARTED', attempt: 1 }, { type: 'TOKEN', attempt: 1, delta: 'from afar' }]);
      await log.append(${JSON.stringify(id)}, { type: 'SUCCEEDED', attempt: 1 });
      await redis.quit();
    `;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const events = await streaming;
    expect(events.map((event) => [event.sequence, event.type, event.delta])).toEqual([
      [1, 'QUEUED', null],
      [2, 'STARTED', null],
      [3, 'TOKEN', 'from afar'],
      [4, 'SUCCEEDED', null],
    ]);
  });

  it('yields every sequence exactly once across subscriber reconnects while a writer appends', async () => {
    const killable = killableSubscriber();
    const log = harness.openWith({ subscriber: killable.subscriber });
    const writer = harness.writer();
    const id = taskId();
    await writer.append(id, { type: 'QUEUED', attempt: 1 });
    const streams = [collect(log.stream(id, 0)), collect(log.stream(id, 0)), collect(log.stream(id, 0))];
    await until(() => log.subscribedTaskCount() === 1);
    for (let i = 2; i <= 1500; i++) {
      await writer.append(id, token(String(i)));
      // Kill the subscriber twice mid-stream; the writer keeps going while it reconnects.
      if (i === 300 || i === 900) await killable.kill();
    }
    await writer.append(id, { type: 'SUCCEEDED', attempt: 1 });
    for (const events of await Promise.all(streams)) expect(events.map((event) => event.sequence)).toEqual(range(1, 1501));
    expect(killable.reconnects()).toBe(2);
    expect(await harness.subscriptions(log, [id])).toBe(0);
  });

  it('still ends when the final event is published while the subscriber is disconnected', async () => {
    const killable = killableSubscriber();
    const log = harness.openWith({ subscriber: killable.subscriber });
    const writer = harness.writer();
    const id = taskId();
    await writer.appendMany(id, [{ type: 'QUEUED', attempt: 1 }, { type: 'STARTED', attempt: 1 }]);
    const streaming = collect(log.stream(id, 0));
    await until(() => log.subscribedTaskCount() === 1);
    await killable.kill();
    // Nothing follows the final event, so only the re-read after the reconnect can deliver it.
    await writer.appendMany(id, [token('last words'), { type: 'SUCCEEDED', attempt: 1 }]);
    expect((await streaming).map((event) => event.type)).toEqual(['QUEUED', 'STARTED', 'TOKEN', 'SUCCEEDED']);
    expect(killable.reconnects()).toBe(1);
  });

  it('fills a lost message with one read per task, not one per subscriber', async () => {
    const redis = harness.connect();
    const log = harness.openWith({ redis });
    const id = taskId();
    await log.appendMany(id, [{ type: 'QUEUED', attempt: 1 }, { type: 'STARTED', attempt: 1 }]);
    const received = range(1, 10).map(() => 0);
    const streams = range(1, 10).map((_, s) => collect(log.stream(id, 0), () => received[s]++));
    await log.append(id, token('seen'));
    // Every stream is past its replay and following live events.
    await until(() => received.every((count) => count === 3));
    // Event 4 goes into the log without being published, as if its message were lost.
    const { prefix } = harness;
    await harness.admin
      .multi()
      .xadd(`${prefix}task:{${id}}:events`, '4-0', 'sequence', '4', 'type', 'TOKEN', 'attempt', '1', 'at', new Date().toISOString(), 'delta', 'lost')
      .hset(`${prefix}task:{${id}}:state`, 'seq', '4')
      .exec();
    const xrange = vi.spyOn(redis, 'xrange');
    await log.append(id, { type: 'SUCCEEDED', attempt: 1 });
    for (const events of await Promise.all(streams)) {
      expect(events.map((event) => event.delta ?? event.type)).toEqual(['QUEUED', 'STARTED', 'seen', 'lost', 'SUCCEEDED']);
    }
    expect(xrange).toHaveBeenCalledTimes(1);
  });

  it('sends the script itself when Redis has forgotten it (NOSCRIPT)', async () => {
    const redis = harness.connect();
    const log = harness.openWith({ redis });
    const id = taskId();
    vi.spyOn(redis, 'evalsha').mockRejectedValueOnce(new Error('NOSCRIPT No matching script. Please use EVAL.'));
    const evalSpy = vi.spyOn(redis, 'eval');
    expect(await log.append(id, { type: 'QUEUED', attempt: 1 })).toMatchObject({ sequence: 1 });
    expect(evalSpy).toHaveBeenCalledTimes(1);
    expect(await log.append(id, { type: 'STARTED', attempt: 1 })).toMatchObject({ sequence: 2 });
    expect(evalSpy).toHaveBeenCalledTimes(1);
  });

  it('applies an append that ioredis resends after a reconnect only once', async () => {
    const redis = harness.connect();
    const log = harness.openWith({ redis });
    const id = taskId();
    await log.append(id, { type: 'QUEUED', attempt: 1 });
    const evalsha = redis.evalsha.bind(redis);
    // The first reply is lost with the connection, and the same call is sent again.
    vi.spyOn(redis, 'evalsha').mockImplementationOnce((async (...args: Parameters<typeof evalsha>) => {
      await evalsha(...args);
      return evalsha(...args);
    }) as typeof redis.evalsha);
    const appended = await log.appendMany(id, [token('a'), token('b')]);
    expect(appended.map((event) => event.sequence)).toEqual([2, 3]);
    expect((await log.read(id, 0)).map((event) => event.delta ?? event.type)).toEqual(['QUEUED', 'a', 'b']);
  });

  it('starts a new log cleanly when the stream outlived its state at expiry', async () => {
    const log = harness.open();
    const id = taskId();
    await harness.admin.xadd(`${harness.prefix}task:{${id}}:events`, '7-0', 'sequence', '7', 'type', 'TOKEN', 'attempt', '1', 'at', 'x');
    expect(await log.append(id, { type: 'QUEUED', attempt: 1 })).toMatchObject({ sequence: 1 });
    expect((await log.read(id, 0)).map((event) => event.sequence)).toEqual([1]);
  });

  it('ignores malformed messages on a task channel', async () => {
    const onError = vi.fn();
    const log = harness.openWith({ onError });
    const id = taskId();
    const streaming = collect(log.stream(id, 0));
    await until(async () => (await harness.subscriptions(log, [id])) === 1);
    const channel = `${harness.prefix}task-events:${id}`;
    await harness.admin.publish(channel, 'not json');
    await harness.admin.publish(channel, JSON.stringify({ taskId: 'someone-else', sequence: 1, type: 'SUCCEEDED', attempt: 1, delta: null, at: 'x' }));
    await log.appendMany(id, [{ type: 'QUEUED', attempt: 1 }, { type: 'CANCELLED', attempt: 1 }]);
    expect((await streaming).map((event) => event.type)).toEqual(['QUEUED', 'CANCELLED']);
    expect(onError).toHaveBeenCalledTimes(2);
  });

  it('works over a RedisPubSub given as the subscriber, and leaves it open', async () => {
    const pubsub = new RedisPubSub({ publisher: harness.connect(), subscriber: harness.connect() });
    const log = harness.openWith({ subscriber: pubsub });
    const ids = [taskId(), taskId()];
    const streams = ids.flatMap((id) => [collect(log.stream(id, 0)), collect(log.stream(id, 0))]);
    await until(() => log.subscribedTaskCount() === 2);
    for (const id of ids) await log.appendMany(id, [{ type: 'QUEUED', attempt: 1 }, token('x'), { type: 'SUCCEEDED', attempt: 1 }]);
    for (const events of await Promise.all(streams)) expect(events.map((event) => event.sequence)).toEqual([1, 2, 3]);
    await until(async () => (await harness.subscriptions(log, ids)) === 0);
    // A stream that ends before its channel's SUBSCRIBE is confirmed leaves nothing behind either.
    const early = log.stream(taskId(), 0, AbortSignal.timeout(1))[Symbol.asyncIterator]();
    expect(await early.next()).toMatchObject({ done: true });
    await log.close();
    expect(await pubsub.getSubscriber().ping()).toBe('PONG');
  });

  it('subscribes and unsubscribes a channel in the right order when streams come and go quickly', async () => {
    const log = harness.open();
    const id = taskId();
    for (let round = 0; round < 20; round++) {
      const controller = new AbortController();
      const stream = log.stream(id, 0, controller.signal)[Symbol.asyncIterator]();
      const next = stream.next();
      if (round % 2) await Promise.resolve();
      controller.abort();
      expect(await next).toMatchObject({ done: true });
    }
    const streaming = collect(log.stream(id, 0));
    await until(() => log.subscribedTaskCount() === 1);
    await log.appendMany(id, [{ type: 'QUEUED', attempt: 1 }, { type: 'SUCCEEDED', attempt: 1 }]);
    expect(await streaming).toHaveLength(2);
    await until(async () => (await harness.subscriptions(log, [id])) === 0);
  });

  it('goes on numbering after minSequence when the live log was lost, and followers see no step back', async () => {
    const log = harness.open();
    const id = taskId();
    const streaming = collect(log.stream(id, 0));
    await until(() => log.subscribedTaskCount() === 1);
    await log.append(id, { type: 'QUEUED', attempt: 1 });
    const started = await log.append(id, { type: 'STARTED', attempt: 1 }, { minSequence: 1 });
    const before = await log.append(id, token('before '), { minSequence: started!.sequence });
    // Redis restarted without persistence: the state and the stream are gone.
    await harness.admin.del(`${harness.prefix}task:{${id}}:state`, `${harness.prefix}task:{${id}}:events`);
    const after = await log.append(id, token('after'), { minSequence: before!.sequence });
    expect(after!.sequence).toBe(4);
    // A floor below the log's last sequence changes nothing.
    expect((await log.append(id, { type: 'SUCCEEDED', attempt: 1 }, { minSequence: 2 }))!.sequence).toBe(5);
    expect((await streaming).map((e) => [e.sequence, e.type, e.delta])).toEqual([
      [1, 'QUEUED', null],
      [2, 'STARTED', null],
      [3, 'TOKEN', 'before '],
      [4, 'TOKEN', 'after'],
      [5, 'SUCCEEDED', null],
    ]);
    expect((await log.read(id, 0)).map((e) => e.sequence)).toEqual([4, 5]);
  });

  it("writes a lost log back from the writer's own events, so a resuming subscriber misses nothing", async () => {
    const log = harness.open();
    const id = taskId();
    await log.append(id, { type: 'QUEUED', attempt: 1 });
    const mine: TaskEvent[] = [];
    let asked = 0;
    const options = () => ({ minSequence: mine.at(-1)?.sequence ?? 1, restore: () => (asked++, mine) });
    for (const event of [{ type: 'STARTED' as const, attempt: 1 }, token('one '), token('two ')]) mine.push((await log.append(id, event, options()))!);
    expect(asked).toBe(0); // asked for only when the log was lost
    // A subscriber has seen up to 'one ' (sequence 3) when Redis restarts without persistence.
    await harness.admin.del(`${harness.prefix}task:{${id}}:state`, `${harness.prefix}task:{${id}}:events`);
    const resumed = collect(log.stream(id, 3));
    await until(() => log.subscribedTaskCount() === 1);
    const three = await log.append(id, token('three'), options());
    expect(asked).toBe(1);
    expect(three!.sequence).toBe(5);
    await log.append(id, { type: 'SUCCEEDED', attempt: 1 }, options());
    expect((await resumed).map((e) => [e.sequence, e.type, e.delta])).toEqual([
      [4, 'TOKEN', 'two '],
      [5, 'TOKEN', 'three'],
      [6, 'SUCCEEDED', null],
    ]);
    // The writer's events are back under their own sequences; QUEUED, appended by another, is not.
    expect((await log.read(id, 0)).map((e) => e.sequence)).toEqual([2, 3, 4, 5, 6]);
  });

  it('closes only the connections it opened', async () => {
    const redis = harness.connect();
    const subscriber = harness.connect();
    // Connected before the log gets it: under load a fresh connection can still be connecting at the end.
    await subscriber.ping();
    const log: TaskEventLog = harness.openWith({ redis, subscriber });
    await log.append(taskId(), { type: 'QUEUED', attempt: 1 });
    await log.close();
    expect(await redis.ping()).toBe('PONG');
    expect(subscriber.status).toBe('ready');
  });
});
