/**
 * One behavioural suite for both implementations of TaskEventLog: in memory, and Redis (the real
 * server on 127.0.0.1:6379, under a random key prefix deleted afterwards).
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { collect, disposers, memoryHarness, range, redisHarness, taskId, until, type Harness } from './test-harness.js';
import { TaskEventStreamError, type TaskEvent, type TaskEventLog } from './types.js';

const token = (delta: string, attempt = 1) => ({ type: 'TOKEN' as const, attempt, delta });

describe.each([{ make: memoryHarness }, { make: redisHarness }])('TaskEventLog', ({ make }) => {
  const harness: Harness = make();
  const cleanup = disposers();
  afterEach(() => cleanup.drain());
  afterAll(() => harness.dispose());

  describe(harness.name, () => {
    it('numbers concurrent appends from several writers 1..n without gaps or duplicates', async () => {
      const id = taskId();
      const writers = Array.from({ length: 5 }, () => harness.writer());
      const results = await Promise.all(
        writers.map((writer, w) => Promise.all(range(1, 200).map((i) => writer.append(id, token(`${w}:${i}`))))),
      );
      const returned = results.flat().map((event) => event!.sequence);
      expect(returned.sort((a, b) => a - b)).toEqual(range(1, 1000));
      const read = await harness.open().read(id, 0);
      expect(read.map((event) => event.sequence)).toEqual(range(1, 1000));
      expect(new Set(read.map((event) => event.delta)).size).toBe(1000);
      expect(await harness.open().lastSequence(id)).toBe(1000);
    });

    it('appends nothing after a final event', async () => {
      const log = harness.open();
      const id = taskId();
      const appended = await log.appendMany(id, [token('a'), { type: 'SUCCEEDED', attempt: 1 }, token('late')]);
      expect(appended.map((event) => [event.sequence, event.type])).toEqual([
        [1, 'TOKEN'],
        [2, 'SUCCEEDED'],
      ]);
      expect(await log.append(id, token('after'))).toBeNull();
      expect(await log.append(id, { type: 'FAILED', attempt: 2, delta: 'no' })).toBeNull();
      expect(await log.appendMany(id, [token('x'), token('y')])).toEqual([]);
      expect((await log.read(id, 0)).map((event) => event.type)).toEqual(['TOKEN', 'SUCCEEDED']);
      expect(await log.lastSequence(id)).toBe(2);
    });

    it('returns the appended event as it is read back', async () => {
      const log = harness.open();
      const id = taskId();
      const queued = await log.append(id, { type: 'QUEUED', attempt: 1 });
      const failed = await log.append(id, { type: 'FAILED', attempt: 1, delta: 'the "provider" said\n/no/ ✓' });
      expect(queued).toEqual({ taskId: id, sequence: 1, type: 'QUEUED', attempt: 1, delta: null, at: expect.any(String) });
      expect(Date.parse(queued!.at)).toBeGreaterThan(Date.now() - 60_000);
      expect(await log.read(id, 0)).toEqual([queued, failed]);
      expect(Object.isFrozen(queued)).toBe(true);
      // An empty delta is text, not null.
      const other = taskId();
      expect((await log.append(other, token('')))!.delta).toBe('');
      expect((await log.read(other, 0))[0].delta).toBe('');
    });

    it('appends with onlyIfEmpty only to an empty log', async () => {
      const log = harness.open();
      const id = taskId();
      const [first, second] = await Promise.all([
        log.append(id, { type: 'QUEUED', attempt: 1 }, { onlyIfEmpty: true }),
        log.append(id, { type: 'QUEUED', attempt: 1 }, { onlyIfEmpty: true }),
      ]);
      expect([first, second].filter(Boolean)).toHaveLength(1);
      expect(await log.appendMany(id, [{ type: 'QUEUED', attempt: 1 }], { onlyIfEmpty: true })).toEqual([]);
      expect(await log.lastSequence(id)).toBe(1);
      // onlyIfEmpty looks at the log before a batch, not between its events.
      const other = taskId();
      expect(await log.appendMany(other, [{ type: 'QUEUED', attempt: 1 }, { type: 'STARTED', attempt: 1 }], { onlyIfEmpty: true })).toHaveLength(2);
    });

    it('refuses writes from an earlier attempt once a later one is recorded (maxAttempt)', async () => {
      const log = harness.open();
      const id = taskId();
      expect(await log.append(id, { type: 'STARTED', attempt: 1 }, { maxAttempt: 1 })).not.toBeNull();
      expect(await log.append(id, token('one'), { maxAttempt: 1 })).not.toBeNull();
      expect(await log.append(id, { type: 'STARTED', attempt: 2 }, { maxAttempt: 2 })).not.toBeNull();
      expect(await log.append(id, token('stale'), { maxAttempt: 1 })).toBeNull();
      expect(await log.appendMany(id, [token('stale'), token('stale')], { maxAttempt: 1 })).toEqual([]);
      expect(await log.append(id, token('two', 2), { maxAttempt: 2 })).not.toBeNull();
      // Within a batch the check runs before each event: stops after a later attempt's event.
      const batch = await log.appendMany(id, [token('two', 2), { type: 'STARTED', attempt: 3 }, token('two again', 2)], { maxAttempt: 2 });
      expect(batch.map((event) => event.attempt)).toEqual([2, 3]);
      expect((await log.read(id, 0)).map((event) => event.delta ?? event.type)).toEqual(['STARTED', 'one', 'STARTED', 'two', 'two', 'STARTED']);
    });

    it('keeps each appendMany batch contiguous and in order among concurrent writers', async () => {
      const id = taskId();
      const writers = Array.from({ length: 4 }, () => harness.writer());
      await Promise.all(
        writers.flatMap((writer, w) => range(1, 25).map((b) => writer.appendMany(id, range(1, 8).map((i) => token(`${w}.${b}.${i}`))))),
      );
      const events = await harness.open().read(id, 0);
      expect(events.map((event) => event.sequence)).toEqual(range(1, 800));
      for (let start = 0; start < events.length; start += 8) {
        const batch = events.slice(start, start + 8).map((event) => event.delta!.split('.'));
        expect(batch.map(([w, b]) => `${w}.${b}`)).toEqual(Array(8).fill(`${batch[0][0]}.${batch[0][1]}`));
        expect(batch.map(([, , i]) => Number(i))).toEqual(range(1, 8));
      }
    });

    it('reads the events after a sequence', async () => {
      const log = harness.open();
      const id = taskId();
      await log.appendMany(id, range(1, 10).map((i) => token(String(i))));
      expect((await log.read(id, 4)).map((event) => event.sequence)).toEqual(range(5, 10));
      expect(await log.read(id, 10)).toEqual([]);
      expect(await log.read(id, 50)).toEqual([]);
      expect(await log.read(taskId(), 0)).toEqual([]);
      expect(await log.lastSequence(taskId())).toBe(0);
      await expect(log.read(id, -1)).rejects.toThrow(RangeError);
    });

    it.each([0, 200, 500])('streams replay then live without a gap or duplicate at the seam (after %i)', async (after) => {
      const log = harness.open();
      const writer = harness.writer();
      const id = taskId();
      const writing = (async () => {
        for (let i = 1; i <= 1000; i++) await writer.append(id, token(String(i)));
        await writer.append(id, { type: 'SUCCEEDED', attempt: 1 });
      })();
      await until(async () => (await log.lastSequence(id)) >= 300);
      const events = await collect(log.stream(id, after));
      await writing;
      expect(events.map((event) => event.sequence)).toEqual(range(after + 1, 1001));
      expect(events.at(-1)!.type).toBe('SUCCEEDED');
      expect(await harness.subscriptions(log, [id])).toBe(0);
    });

    it('waits for live events and ends after the final one', async () => {
      const log = harness.open();
      const id = taskId();
      const stream = log.stream(id, 0)[Symbol.asyncIterator]();
      const first = stream.next();
      await until(async () => (await harness.subscriptions(log, [id])) === 1);
      await log.append(id, { type: 'QUEUED', attempt: 1 });
      expect((await first).value).toMatchObject({ sequence: 1, type: 'QUEUED' });
      const text = 'hé ✓ 🚀 "quoted" \\ / \n\t\u0001';
      await log.appendMany(id, [{ type: 'STARTED', attempt: 1 }, token(text), { type: 'CANCELLED', attempt: 1 }]);
      const rest: TaskEvent[] = [];
      for (let result = await stream.next(); !result.done; result = await stream.next()) rest.push(result.value);
      expect(rest.map((event) => event.type)).toEqual(['STARTED', 'TOKEN', 'CANCELLED']);
      expect(rest[1]).toEqual({ taskId: id, sequence: 3, type: 'TOKEN', attempt: 1, delta: text, at: expect.any(String) });
      expect(rest[2].delta).toBeNull();
      await until(async () => (await harness.subscriptions(log, [id])) === 0);
    });

    it('ends at once when the replay holds the final event', async () => {
      const log = harness.open();
      const id = taskId();
      await log.appendMany(id, [{ type: 'QUEUED', attempt: 1 }, { type: 'FAILED', attempt: 1, delta: 'boom' }]);
      expect((await collect(log.stream(id, 0))).map((event) => event.type)).toEqual(['QUEUED', 'FAILED']);
      expect((await collect(log.stream(id, 1))).map((event) => event.delta)).toEqual(['boom']);
      await until(async () => (await harness.subscriptions(log, [id])) === 0);
      expect(log.subscribedTaskCount()).toBe(0);
    });

    it('ends a stream that starts past the end of the log once the task has ended, before or after it subscribed', async () => {
      const log = harness.open();
      const within = <T>(promise: Promise<T>) => Promise.race([promise, new Promise((resolve) => setTimeout(resolve, 2000, 'still waiting'))]);
      // Ended before the subscription: nothing after afterSequence, and nothing can come.
      const ended = taskId();
      await log.appendMany(ended, [{ type: 'QUEUED', attempt: 1 }, { type: 'SUCCEEDED', attempt: 1 }]);
      for (const after of [2, 3, 50]) expect(await within(collect(log.stream(ended, after)))).toEqual([]);

      // Ends while subscribed, still before afterSequence: the stream completes rather than waiting forever.
      const running = taskId();
      await log.appendMany(running, [{ type: 'QUEUED', attempt: 1 }, { type: 'STARTED', attempt: 1 }]);
      const stream = log.stream(running, 10)[Symbol.asyncIterator]();
      const next = stream.next();
      await until(async () => (await harness.subscriptions(log, [running])) === 1);
      await harness.writer().appendMany(running, [token('late'), { type: 'CANCELLED', attempt: 1 }]);
      expect(await within(next)).toEqual({ done: true, value: undefined });
      await until(async () => (await harness.subscriptions(log, [ended, running])) === 0);

      // A position past the end of a running task still waits for what comes after it.
      const live = taskId();
      await log.appendMany(live, [{ type: 'QUEUED', attempt: 1 }, { type: 'STARTED', attempt: 1 }]);
      const waiting = log.stream(live, 3)[Symbol.asyncIterator]();
      const pending = waiting.next();
      await until(async () => (await harness.subscriptions(log, [live])) === 1);
      await harness.writer().appendMany(live, [token('a'), token('b'), { type: 'SUCCEEDED', attempt: 1 }]);
      expect((await pending).value).toMatchObject({ sequence: 4, delta: 'b' });
      expect((await waiting.next()).value).toMatchObject({ sequence: 5, type: 'SUCCEEDED' });
      expect((await waiting.next()).done).toBe(true);
    });

    it('ends a waiting stream when its signal aborts or return() is called', async () => {
      const log = harness.open();
      const id = taskId();
      await log.append(id, { type: 'QUEUED', attempt: 1 });
      const controller = new AbortController();
      const aborted = log.stream(id, 0, controller.signal)[Symbol.asyncIterator]();
      const returned = log.stream(id, 0)[Symbol.asyncIterator]();
      expect((await aborted.next()).value).toMatchObject({ sequence: 1 });
      expect((await returned.next()).value).toMatchObject({ sequence: 1 });
      const waitingAborted = aborted.next();
      const waitingReturned = returned.next();
      expect(await harness.subscriptions(log, [id])).toBe(1);
      controller.abort();
      await returned.return!();
      expect(await waitingAborted).toEqual({ done: true, value: undefined });
      expect(await waitingReturned).toEqual({ done: true, value: undefined });
      expect(await aborted.next()).toMatchObject({ done: true });
      await until(async () => (await harness.subscriptions(log, [id])) === 0);
      // An already aborted signal subscribes to nothing.
      expect(await collect(log.stream(id, 0, AbortSignal.abort()))).toEqual([]);
      expect(log.subscribedTaskCount()).toBe(0);
    });

    it('cuts off a consumer that falls too far behind', async () => {
      const log = harness.open({ maxBufferedPerSubscriber: 20 });
      const id = taskId();
      await log.append(id, { type: 'QUEUED', attempt: 1 });
      const stream = log.stream(id, 0)[Symbol.asyncIterator]();
      expect((await stream.next()).value).toMatchObject({ sequence: 1 });
      for (let i = 0; i < 5; i++) await log.appendMany(id, range(1, 10).map((n) => token(String(n))));
      await until(() => log.subscribedTaskCount() === 0);
      const error = await stream.next().then(
        () => null,
        (thrown: unknown) => thrown,
      );
      expect(error).toBeInstanceOf(TaskEventStreamError);
      expect(error).toMatchObject({ code: 'SLOW_CONSUMER' });
      expect(await stream.next()).toMatchObject({ done: true });
      expect(await harness.subscriptions(log, [id])).toBe(0);
    });

    it('delivers every event in order to 1,000 streams over 100 tasks, one shared frozen object per event', async () => {
      const log = harness.open();
      const writer = harness.writer();
      const ids = Array.from({ length: 100 }, () => taskId());
      let started = 0;
      const streams = ids.flatMap((id) => range(1, 10).map(() => collect(log.stream(id, 0), (event) => event.sequence === 1 && started++)));
      await Promise.all(ids.map((id) => writer.append(id, { type: 'QUEUED', attempt: 1 })));
      // Every stream has its first event (from the replay or live): what follows is live for all.
      await until(() => started === 1000);
      await Promise.all(
        ids.map(async (id) => {
          for (let batch = 0; batch < 4; batch++) await writer.appendMany(id, range(1, 5).map((i) => token(`${batch}.${i}`)));
          await writer.append(id, { type: 'SUCCEEDED', attempt: 1 });
        }),
      );
      const results = await Promise.all(streams);
      for (const events of results) expect(events.map((event) => event.sequence)).toEqual(range(1, 22));
      for (let t = 0; t < ids.length; t++) {
        const forTask = results.slice(t * 10, t * 10 + 10);
        for (const events of forTask) {
          expect(events[0].taskId).toBe(ids[t]);
          // Live events are parsed once per process and shared by every stream of the task.
          for (let i = 1; i < events.length; i++) expect(events[i]).toBe(forTask[0][i]);
        }
      }
      expect(Object.isFrozen(results[0][5])).toBe(true);
      expect(await harness.subscriptions(log, ids)).toBe(0);
      expect(log.subscribedTaskCount()).toBe(0);
    });

    it('subscribe() delivers live events in order from now on, until stopped', async () => {
      const log = harness.open();
      const id = taskId();
      await log.append(id, { type: 'QUEUED', attempt: 1 });
      const seen: number[] = [];
      const stop = await log.subscribe(id, (event) => seen.push(event.sequence));
      await log.append(id, { type: 'STARTED', attempt: 1 });
      await log.appendMany(id, [token('a'), token('b')]);
      await until(() => seen.length === 3);
      await stop();
      await log.append(id, token('c'));
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(seen).toEqual([2, 3, 4]);
      await until(async () => (await harness.subscriptions(log, [id])) === 0);
    });

    it('expires a task log after the retention time', async () => {
      const log = harness.open({ retentionSeconds: 120 });
      const id = taskId();
      await log.appendMany(id, [{ type: 'QUEUED', attempt: 1 }, token('x')]);
      await harness.expectExpiry(log, id, 120);
    });

    it('ends open streams when the log closes', async () => {
      const log = harness.open({ maxBufferedPerSubscriber: 99 });
      const id = taskId();
      const stream = log.stream(id, 0)[Symbol.asyncIterator]();
      const waiting = stream.next();
      await until(() => log.subscribedTaskCount() === 1);
      // Handled before it can reject: close() may settle it before its own promise resolves.
      const ended = expect(waiting).rejects.toMatchObject({ code: 'CLOSED' });
      await log.close();
      await ended;
      expect(log.subscribedTaskCount()).toBe(0);
      await expect(log.append(id, token('x'))).rejects.toThrow(/closed/);
      expect(await log.ping()).toBe(false);
    });

    it('answers ping', async () => {
      expect(await harness.open().ping()).toBe(true);
    });

    it('rejects malformed input with a clear error', async () => {
      const log: TaskEventLog = harness.open();
      await expect(log.append(taskId(), { type: 'NOPE' as 'TOKEN', attempt: 1 })).rejects.toThrow(/Unknown task event type/);
      await expect(log.append(taskId(), { type: 'TOKEN', attempt: 1.5 })).rejects.toThrow(/attempt/);
      expect(() => log.stream(taskId(), -1)).toThrow(RangeError);
    });
  });
});
