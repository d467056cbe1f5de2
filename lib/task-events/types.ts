/**
 * The event feed of tasks: every task has a log of events numbered 1, 2, 3... without gaps,
 * appended by whoever changes the task (the outbox relay: QUEUED; workers: STARTED, TOKEN and the
 * outcome; cancelTask: CANCELLED) and read by subscribers (the router), who replay what they missed
 * and then follow live events. Implementations: Redis (a stream per task plus pub/sub, shared by
 * every process) and in-memory (one process, for `npm start` without REDIS_URL).
 */
export const TASK_EVENT_TYPES = ['QUEUED', 'STARTED', 'TOKEN', 'SUCCEEDED', 'FAILED', 'CANCELLED'] as const;
export type TaskEventType = (typeof TASK_EVENT_TYPES)[number];
export const FINAL_EVENT_TYPES: ReadonlySet<TaskEventType> = new Set(['SUCCEEDED', 'FAILED', 'CANCELLED']);

export interface TaskEvent {
  taskId: string;
  /** 1, 2, 3... per task, no gaps. */
  sequence: number;
  type: TaskEventType;
  /**
   * Which run of the task produced it (1 for the first). A STARTED event with a higher attempt
   * means the text so far is void: the task starts over.
   */
  attempt: number;
  /** The new text, on TOKEN events; the reason, on FAILED; null otherwise. */
  delta: string | null;
  /** When it was appended, ISO-8601. */
  at: string;
}

export interface AppendOptions {
  /**
   * Append only when the log is still empty (for QUEUED, which an at-least-once relay may try to
   * append twice). Returns null when it is not.
   */
  onlyIfEmpty?: boolean;
  /**
   * Append only when no event of a later attempt is recorded, i.e. the highest attempt so far is at
   * most this (a worker that lost its lease must not write). Checked before each event of a batch.
   */
  maxAttempt?: number;
  /**
   * The highest sequence the caller knows the log has held (it appended or read it). When the log
   * holds less, it was lost (Redis restarted without persistence, or evicted it): numbering goes on
   * after this, so a sequence never names two different events and subscribers that were following
   * the task see no step back. A store that cannot lose a log ignores it.
   */
  minSequence?: number;
  /**
   * With `minSequence`: the events this caller appended to the log before (a worker's attempt so
   * far), asked for only when the log turns out lost. Those above what the log still holds are
   * written back under their own sequences, and published, before the new events: a subscriber
   * that resumes after any of them misses nothing. A store that cannot lose a log ignores it.
   */
  restore?: () => readonly TaskEvent[];
}

/** Why a stream ended with an error: a closed set, for the router to map onto its own codes. */
export type TaskEventStreamErrorCode =
  /** More than `maxBufferedPerSubscriber` events were waiting for the consumer; it was cut off. */
  | 'SLOW_CONSUMER'
  /** The log was closed (the process is shutting down) while the stream was open. */
  | 'CLOSED';

export class TaskEventStreamError extends Error {
  override readonly name = 'TaskEventStreamError';
  constructor(
    readonly code: TaskEventStreamErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export interface TaskEventLog {
  /**
   * Appends one event with the next sequence number, atomically, and publishes it to live
   * subscribers. Returns null (and appends nothing) when the log already holds a final event or an
   * AppendOptions condition fails: nothing is ever appended after SUCCEEDED, FAILED or CANCELLED.
   */
  append(taskId: string, event: { type: TaskEventType; attempt: number; delta?: string | null }, options?: AppendOptions): Promise<TaskEvent | null>;
  /**
   * Appends several events in order in one round trip (coalesced tokens); stops at the first refused
   * (after a final event, or when `maxAttempt` fails) and returns those appended. `onlyIfEmpty`
   * applies to the log before the batch.
   */
  appendMany(taskId: string, events: { type: TaskEventType; attempt: number; delta?: string | null }[], options?: AppendOptions): Promise<TaskEvent[]>;
  /** The events with sequence > afterSequence, in order ([] when the log expired or never existed). */
  read(taskId: string, afterSequence: number): Promise<TaskEvent[]>;
  /** The last sequence appended (0 when none). */
  lastSequence(taskId: string): Promise<number>;
  /**
   * Replays the events after `afterSequence`, then yields live ones, without a gap or a duplicate
   * at the seam, and returns after yielding a final event. Ends early (returns) when `signal`
   * aborts or the iterator's `return()` is called, even while a `next()` is waiting. A consumer
   * that is too slow is cut off with a TaskEventStreamError (SLOW_CONSUMER) rather than buffering
   * forever. Subscribes on the first `next()`. Every event is a frozen object shared by all the
   * process's subscribers of the task: do not mutate it.
   */
  stream(taskId: string, afterSequence: number, signal?: AbortSignal): AsyncIterable<TaskEvent>;
  /**
   * Live events of one task, in order, from now on; resolves once subscribed; call the result to
   * stop. The listener runs synchronously in the delivery path: keep it short and do not throw.
   */
  subscribe(taskId: string, listener: (event: TaskEvent) => void): Promise<() => Promise<void>>;
  /** True when the store answers within a second (for /readyz). */
  ping(): Promise<boolean>;
  /** Ends open streams (TaskEventStreamError CLOSED) and closes the connections the log opened itself. */
  close(): Promise<void>;
}
