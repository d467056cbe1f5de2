import { describe, expect, it } from 'vitest';
import { TaskEventStream, type ChannelListener, type EventSource } from './stream.js';
import type { TaskEvent, TaskEventType } from './types.js';

/** A store of one task whose log and live channel the test drives by hand. */
function fakeSource() {
  const log: TaskEvent[] = [];
  const listeners = new Set<ChannelListener>();
  const source: EventSource = {
    read: async (_taskId, after) => log.filter((event) => event.sequence > after),
    lastSequence: async () => log.at(-1)?.sequence ?? 0,
    listen: async (_taskId, listener) => void listeners.add(listener),
    unlisten: (_taskId, listener) => void listeners.delete(listener),
  };
  const event = (sequence: number, type: TaskEventType = 'TOKEN'): TaskEvent => Object.freeze({ taskId: 't', sequence, type, attempt: 1, delta: `${sequence}`, at: '' });
  /** Appends to the log; publishes unless `lost`. */
  const append = (sequence: number, type?: TaskEventType, lost = false) => {
    const appended = event(sequence, type);
    log.push(appended);
    if (!lost) for (const listener of listeners) listener.deliver(appended);
    return appended;
  };
  return { source, listeners, append };
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

describe('TaskEventStream', () => {
  it('hands a live event straight to the waiting next(), in order', async () => {
    expect.assertions(4);
    const { source, append } = fakeSource();
    const stream = new TaskEventStream(source, 't', 0, 100);
    const first = stream.next();
    await tick();
    const one = append(1);
    expect(await first).toEqual({ done: false, value: one });
    const second = stream.next();
    const two = append(2);
    // The very object the channel delivered, not a copy.
    expect((await second).value).toBe(two);
    const third = stream.next();
    append(3, 'SUCCEEDED');
    expect((await third).value?.type).toBe('SUCCEEDED');
    expect(await stream.next()).toEqual({ done: true, value: undefined });
  });

  it('reads what a live event skipped while a next() was waiting', async () => {
    expect.assertions(1);
    const { source, append } = fakeSource();
    const stream = new TaskEventStream(source, 't', 0, 100);
    const pending = stream.next();
    await tick();
    append(1);
    await pending;
    const waiting = stream.next();
    append(2, 'TOKEN', true);
    append(3, 'TOKEN', true);
    append(4, 'SUCCEEDED');
    const sequences = [(await waiting).value!.sequence];
    for await (const event of stream) sequences.push(event.sequence);
    expect(sequences).toEqual([2, 3, 4]);
  });

  it('ends a waiting next() on return(), and serves overlapping next() calls in turn', async () => {
    expect.assertions(3);
    const { source, listeners, append } = fakeSource();
    const stream = new TaskEventStream(source, 't', 0, 100);
    const start = stream.next();
    await tick();
    append(1);
    await start;
    const [a, b] = [stream.next(), stream.next()];
    append(2);
    expect((await a).value?.sequence).toBe(2);
    const waiting = b;
    await stream.return();
    expect(await waiting).toEqual({ done: true, value: undefined });
    expect(listeners.size).toBe(0);
  });
});
