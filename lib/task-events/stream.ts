/**
 * The parts both implementations share: how a subscriber is told about live events, how a stream
 * stitches the replay to live events, and how a published event is checked and frozen.
 */
import { FINAL_EVENT_TYPES, TASK_EVENT_TYPES, TaskEventStreamError, type TaskEvent, type TaskEventType } from './types.js';

/** What a store's fan-out calls for each live event of a task it was asked to listen to. */
export interface ChannelListener {
  /** Called in sequence order, possibly more than once for a sequence (after a reconnect). */
  deliver(event: TaskEvent): void;
  /** The log is closing: no more events will come. */
  closed?(): void;
}

/** What TaskEventStream needs from a store. */
export interface EventSource {
  read(taskId: string, afterSequence: number): Promise<TaskEvent[]>;
  /** The last sequence appended (0 when none). */
  lastSequence(taskId: string): Promise<number>;
  /** Adds the listener synchronously; resolves once live events reach it. */
  listen(taskId: string, listener: ChannelListener): Promise<void>;
  /** Idempotent. */
  unlisten(taskId: string, listener: ChannelListener): void;
}

const TYPES: ReadonlySet<string> = new Set(TASK_EVENT_TYPES);
export const isTaskEventType = (value: unknown): value is TaskEventType => typeof value === 'string' && TYPES.has(value);

/** Checks a decoded message and freezes it in place (no copy), or returns null when it is no TaskEvent. */
export function freezeTaskEvent(value: unknown): TaskEvent | null {
  if (typeof value !== 'object' || value === null) return null;
  const event = value as Record<string, unknown>;
  if (
    typeof event.taskId !== 'string' ||
    !Number.isSafeInteger(event.sequence) ||
    !isTaskEventType(event.type) ||
    !Number.isSafeInteger(event.attempt) ||
    (event.delta !== null && typeof event.delta !== 'string') ||
    typeof event.at !== 'string'
  ) {
    return null;
  }
  return Object.freeze(event) as unknown as TaskEvent;
}

export function assertAppendable(event: { type: unknown; attempt: unknown; delta?: unknown }): void {
  if (!isTaskEventType(event.type)) throw new TypeError(`Unknown task event type ${JSON.stringify(event.type)}; expected one of ${TASK_EVENT_TYPES.join(', ')}.`);
  if (!Number.isSafeInteger(event.attempt) || (event.attempt as number) < 0) throw new TypeError(`A task event's attempt must be a whole number ≥ 0, got ${String(event.attempt)}.`);
  if (event.delta != null && typeof event.delta !== 'string') throw new TypeError("A task event's delta must be a string or null.");
}

export function assertSequence(name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${name} must be a whole number ≥ 0, got ${String(value)}.`);
}

/** Wraps a plain `subscribe` listener: drops what it saw already (redeliveries after a reconnect). */
export class FunctionListener implements ChannelListener {
  constructor(
    private readonly listener: (event: TaskEvent) => void,
    private readonly onError: (error: unknown) => void,
    /** The last sequence delivered, or the floor below which events count as "before subscribing". */
    public last = 0,
  ) {}

  deliver(event: TaskEvent): void {
    if (event.sequence <= this.last) return;
    this.last = event.sequence;
    try {
      this.listener(event);
    } catch (error) {
      this.onError(error);
    }
  }
}

const DONE: IteratorReturnResult<undefined> = Object.freeze({ done: true, value: undefined });
const NO_EVENTS: readonly TaskEvent[] = Object.freeze([]);

/**
 * One subscriber's stream: subscribe first, buffering live events; read the replay; yield it; then
 * yield buffered and live events, skipping what was yielded already and re-reading the log when a
 * live event skips a sequence. A hand-written iterator rather than an async generator so that
 * `return()` and an abort end a `next()` that is waiting for an event, and so that the stream
 * itself is the listener (one object per subscriber).
 */
export class TaskEventStream implements AsyncIterableIterator<TaskEvent>, ChannelListener {
  /** The last sequence yielded (or the `afterSequence` asked for). */
  private last: number;
  private replay: readonly TaskEvent[] = NO_EVENTS;
  private replayIndex = 0;
  /** Live events not yet consumed: a queue read from `head`. */
  private queue: TaskEvent[] = [];
  private head = 0;
  private started = false;
  private listening = false;
  private done = false;
  private failure: Error | null = null;
  private wake: (() => void) | null = null;
  private pulling = false;
  private waiting: (() => void)[] | null = null;
  /**
   * A `next()` waiting for the next live event with nothing else pending: {@link deliver} settles
   * it directly. The common case of a live stream, kept free of an async frame and a second promise
   * per event (each one lives until the task's next event, long enough to reach the old generation).
   */
  private resolveNext: ((result: IteratorResult<TaskEvent>) => void) | null = null;
  private rejectNext: ((error: unknown) => void) | null = null;
  /** Made only for a stream with a signal (an arrow-function field would cost every stream one). */
  private onAbort: (() => void) | null = null;

  constructor(
    private readonly source: EventSource,
    private readonly taskId: string,
    afterSequence: number,
    private readonly maxBuffered: number,
    private readonly signal?: AbortSignal,
  ) {
    this.last = afterSequence;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<TaskEvent>> {
    // for-await and graphql-js never overlap calls; anyone else waits for the previous one.
    if (this.pulling) return new Promise<void>((resolve) => (this.waiting ??= []).push(resolve)).then(() => this.next());
    if (this.started && this.listening && !this.done && !this.failure && this.replayIndex >= this.replay.length && this.head >= this.queue.length) {
      this.pulling = true;
      return new Promise<IteratorResult<TaskEvent>>((resolve, reject) => {
        this.resolveNext = resolve;
        this.rejectNext = reject;
      });
    }
    return this.pull();
  }

  return(): Promise<IteratorResult<TaskEvent>> {
    this.stop();
    return Promise.resolve(DONE);
  }

  throw(error?: unknown): Promise<IteratorResult<TaskEvent>> {
    this.stop();
    return Promise.reject(error);
  }

  deliver(event: TaskEvent): void {
    if (!this.listening) return;
    if (event.sequence <= this.last) {
      // A final event at or before where this subscriber starts (an `afterSequence` past the end):
      // the task has ended, and nothing after it will ever come.
      if (FINAL_EVENT_TYPES.has(event.type)) this.stop();
      return;
    }
    const resolve = this.resolveNext;
    if (resolve && event.sequence === this.last + 1) {
      this.resolveNext = this.rejectNext = null;
      this.last = event.sequence;
      if (FINAL_EVENT_TYPES.has(event.type)) this.stop();
      this.pulled();
      resolve({ done: false, value: event });
      return;
    }
    this.queue.push(event);
    if (this.queue.length - this.head > this.maxBuffered) {
      this.failure = new TaskEventStreamError(
        'SLOW_CONSUMER',
        `The consumer of task ${this.taskId}'s events fell more than ${this.maxBuffered} events behind and was cut off; subscribe again with afterSequence ${this.last}.`,
      );
      this.stop();
      return;
    }
    // After a final event nothing more can come: free the subscription now, not when it is consumed.
    if (FINAL_EVENT_TYPES.has(event.type)) this.unlisten();
    this.notify();
  }

  closed(): void {
    if (this.done) return;
    this.failure ??= new TaskEventStreamError('CLOSED', 'The task event log was closed.');
    this.stop();
  }

  private async pull(): Promise<IteratorResult<TaskEvent>> {
    this.pulling = true;
    try {
      if (!this.started) await this.start();
      for (;;) {
        if (this.failure) {
          const failure = this.failure;
          this.failure = null;
          throw failure;
        }
        if (this.done) return DONE;
        let event: TaskEvent;
        let live = false;
        if (this.replayIndex < this.replay.length) {
          event = this.replay[this.replayIndex++];
        } else if (this.head < this.queue.length) {
          event = this.queue[this.head++];
          live = true;
          if (this.head === this.queue.length) {
            this.queue.length = 0;
            this.head = 0;
          }
        } else {
          this.replay = NO_EVENTS;
          this.replayIndex = 0;
          await new Promise<void>((resolve) => (this.wake = resolve));
          continue;
        }
        if (event.sequence <= this.last) continue;
        if (live && event.sequence > this.last + 1) {
          // A live event skipped some (lost while the subscriber reconnected): the log has them.
          const filled = await this.source.read(this.taskId, this.last);
          if (filled.length === 0 || filled[filled.length - 1].sequence < event.sequence) filled.push(event);
          this.replay = filled;
          this.replayIndex = 0;
          continue;
        }
        this.last = event.sequence;
        if (FINAL_EVENT_TYPES.has(event.type)) this.stop();
        return { done: false, value: event };
      }
    } catch (error) {
      this.stop();
      throw error;
    } finally {
      this.pulled();
    }
  }

  /** The current `next()` is answered: the next caller in line may go. */
  private pulled(): void {
    this.pulling = false;
    const next = this.waiting?.shift();
    if (next) next();
  }

  private async start(): Promise<void> {
    this.started = true;
    if (this.signal) {
      if (this.signal.aborted) {
        this.done = true;
        return;
      }
      this.onAbort = () => this.stop();
      this.signal.addEventListener('abort', this.onAbort, { once: true });
    }
    this.listening = true;
    await this.source.listen(this.taskId, this);
    if (this.done) return;
    // Subscribed before reading: whatever is appended after the read arrives live.
    const replay = await this.source.read(this.taskId, this.last);
    if (replay.length > 0 && FINAL_EVENT_TYPES.has(replay[replay.length - 1].type)) this.unlisten();
    this.replay = replay;
    if (replay.length === 0 && this.last > 0 && !this.done) await this.endIfFinished();
  }

  /**
   * Nothing after `afterSequence` yet: if the log already ended at or before it (the client has the
   * final event, or asked for a position past the end), there is nothing to wait for. A final event
   * appended from now on arrives live and ends the stream in {@link deliver}.
   */
  private async endIfFinished(): Promise<void> {
    const end = await this.source.lastSequence(this.taskId);
    if (end === 0 || end > this.last || this.done) return;
    const [tail] = await this.source.read(this.taskId, end - 1);
    if (tail && FINAL_EVENT_TYPES.has(tail.type)) this.stop();
  }

  private stop(): void {
    if (this.done) return;
    this.done = true;
    this.unlisten();
    if (this.onAbort) this.signal?.removeEventListener('abort', this.onAbort);
    this.queue = [];
    this.head = 0;
    this.notify();
  }

  private unlisten(): void {
    if (!this.listening) return;
    this.listening = false;
    this.source.unlisten(this.taskId, this);
  }

  private notify(): void {
    const wake = this.wake;
    if (wake) {
      this.wake = null;
      wake();
    }
    const resolve = this.resolveNext;
    if (resolve) {
      // Anything but the very next event (a gap, a stop, a failure): the full path answers the waiting `next()`.
      const reject = this.rejectNext!;
      this.resolveNext = this.rejectNext = null;
      this.pulling = false;
      this.pull().then(resolve, reject);
    }
  }
}
