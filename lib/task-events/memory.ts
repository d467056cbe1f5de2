/**
 * The task event log in one process's memory, for `npm start` without REDIS_URL: the same
 * semantics as the Redis log, shared by nothing outside this process.
 */
import { assertAppendable, assertSequence, FunctionListener, TaskEventStream, type ChannelListener, type EventSource } from './stream.js';
import { FINAL_EVENT_TYPES, type AppendOptions, type TaskEvent, type TaskEventLog, type TaskEventType } from './types.js';

export interface MemoryTaskEventLogOptions {
  /** How long a task's log is kept after its last append. @default 86400 */
  retentionSeconds?: number;
  /** Live events a stream holds for a consumer that does not keep up before cutting it off. @default 10000 */
  maxBufferedPerSubscriber?: number;
  /** Where a throwing `subscribe` listener is reported. @default ignored */
  onListenerError?: (error: unknown) => void;
}

export interface MemoryTaskEventLog extends TaskEventLog {
  /** How many tasks have live listeners in this process (for metrics, and tests of leaks). */
  subscribedTaskCount(): number;
}

interface TaskLog {
  events: TaskEvent[];
  highestAttempt: number;
  final: boolean;
  expiresAt: number;
}

type NewEvent = { type: TaskEventType; attempt: number; delta?: string | null };

export function createMemoryTaskEventLog(options: MemoryTaskEventLogOptions = {}): MemoryTaskEventLog {
  const retentionMs = (options.retentionSeconds ?? 86_400) * 1000;
  const maxBuffered = options.maxBufferedPerSubscriber ?? 10_000;
  const onListenerError = options.onListenerError ?? (() => {});
  const logs = new Map<string, TaskLog>();
  const listeners = new Map<string, Set<ChannelListener>>();
  let closed = false;

  // Expired logs go in a periodic sweep (and are ignored as soon as they expire); it never keeps the process alive.
  const sweep = setInterval(
    () => {
      const now = Date.now();
      for (const [taskId, log] of logs) if (log.expiresAt <= now) logs.delete(taskId);
    },
    Math.min(retentionMs, 60_000),
  );
  sweep.unref();

  function current(taskId: string): TaskLog | undefined {
    const log = logs.get(taskId);
    if (log && log.expiresAt <= Date.now()) {
      logs.delete(taskId);
      return undefined;
    }
    return log;
  }

  function appendEvents(taskId: string, events: NewEvent[], appendOptions: AppendOptions = {}): TaskEvent[] {
    if (closed) throw new Error('The task event log is closed.');
    for (const event of events) assertAppendable(event);
    if (events.length === 0) return [];
    let log = current(taskId);
    if (log?.final) return [];
    if (appendOptions.onlyIfEmpty && log && log.events.length > 0) return [];
    const at = new Date().toISOString();
    const appended: TaskEvent[] = [];
    for (const event of events) {
      if (appendOptions.maxAttempt !== undefined && (log?.highestAttempt ?? 0) > appendOptions.maxAttempt) break;
      log ??= { events: [], highestAttempt: 0, final: false, expiresAt: 0 };
      const taskEvent: TaskEvent = Object.freeze({
        taskId,
        sequence: log.events.length + 1,
        type: event.type,
        attempt: event.attempt,
        delta: event.delta ?? null,
        at,
      });
      log.events.push(taskEvent);
      appended.push(taskEvent);
      if (event.attempt > log.highestAttempt) log.highestAttempt = event.attempt;
      if (FINAL_EVENT_TYPES.has(event.type)) {
        log.final = true;
        break;
      }
    }
    if (!log || appended.length === 0) return [];
    log.expiresAt = Date.now() + retentionMs;
    logs.set(taskId, log);
    const subscribed = listeners.get(taskId);
    // Never call listeners inside append's stack: a listener that appends or throws must not disturb the writer.
    if (subscribed) queueMicrotask(() => deliverAll(taskId, appended));
    return appended;
  }

  function deliverAll(taskId: string, events: TaskEvent[]): void {
    const subscribed = listeners.get(taskId);
    if (!subscribed) return;
    for (const event of events) for (const listener of subscribed) listener.deliver(event);
  }

  const source: EventSource = {
    read: async (taskId, afterSequence) => (current(taskId)?.events ?? []).slice(afterSequence),
    lastSequence: async (taskId) => current(taskId)?.events.length ?? 0,
    listen: async (taskId, listener) => {
      if (closed) throw new Error('The task event log is closed.');
      let set = listeners.get(taskId);
      if (!set) listeners.set(taskId, (set = new Set()));
      set.add(listener);
    },
    unlisten: (taskId, listener) => {
      const set = listeners.get(taskId);
      if (set?.delete(listener) && set.size === 0) listeners.delete(taskId);
    },
  };

  return {
    async append(taskId, event, appendOptions) {
      return appendEvents(taskId, [event], appendOptions)[0] ?? null;
    },
    async appendMany(taskId, events, appendOptions) {
      return appendEvents(taskId, events, appendOptions);
    },
    async read(taskId, afterSequence) {
      assertSequence('afterSequence', afterSequence);
      return source.read(taskId, afterSequence);
    },
    lastSequence: source.lastSequence,
    stream(taskId, afterSequence, signal) {
      assertSequence('afterSequence', afterSequence);
      return new TaskEventStream(source, taskId, afterSequence, maxBuffered, signal);
    },
    async subscribe(taskId, listener) {
      const wrapped = new FunctionListener(listener, onListenerError, current(taskId)?.events.length ?? 0);
      await source.listen(taskId, wrapped);
      return async () => source.unlisten(taskId, wrapped);
    },
    async ping() {
      return !closed;
    },
    async close() {
      if (closed) return;
      closed = true;
      clearInterval(sweep);
      const open = [...listeners.values()];
      listeners.clear();
      for (const set of open) for (const listener of set) listener.closed?.();
    },
    subscribedTaskCount: () => listeners.size,
  };
}
