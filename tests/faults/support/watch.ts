import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import type { RouterProcess } from '../../support/platform.js';
import { sleep } from './cluster.js';

/** One event as a subscriber receives it. */
export interface WatchedEvent {
  sequence: number;
  type: string;
  delta: string | null;
  attempt: number;
}

const FINAL = new Set(['SUCCEEDED', 'FAILED', 'CANCELLED']);
const QUERY = 'subscription ($id: ID!, $after: Int) { taskEvents(taskId: $id, afterSequence: $after) { sequence type delta attempt } }';

export interface WatchOptions {
  /** The routers to use, asked again before each (re)subscription: a stopped one is skipped. */
  routers: () => RouterProcess[];
  token: string;
  taskId: string;
  /** Which router to try first (subscribers spread over the replicas). @default 0 */
  routerIndex?: number;
  /** A subscription silent this long counts as a stall and is opened again. @default 45000 */
  stallMs?: number;
  /** Give up (the watch ends without a final event) after this long. @default 180000 */
  timeoutMs?: number;
  /** Start after this sequence (a client that already has the events up to it). @default 0 */
  afterSequence?: number;
}

/**
 * A frontend following one task the way the README tells it to: subscribe with graphql-ws
 * (through one router, then another if that one goes away), keep the last sequence received, and
 * when the socket closes or the subscription fails (SERVICE_UNAVAILABLE), subscribe again with
 * `afterSequence` set to it, until the final event. It records what it saw, so a scenario can
 * check the stream: no gap, no duplicate, one final event at the end.
 */
export class TaskWatch {
  readonly events: WatchedEvent[] = [];
  /** Subscriptions opened after the first. */
  resumes = 0;
  /** Close codes of the sockets that closed under the subscription (1001: a router going away). */
  readonly closeCodes: number[] = [];
  /** Error codes received (GraphQL `extensions.code`, or `socket` for a connection that failed). */
  readonly errorCodes: string[] = [];
  /** Events received again after a resume (their sequence was not above the last one). */
  duplicates = 0;
  /** Times the sequence jumped (an event skipped). */
  gaps = 0;
  /** Subscriptions that stayed silent for `stallMs` and were opened again. */
  stalls = 0;
  /** Subscriptions that completed without a final event. */
  earlyCompletions = 0;
  readonly done: Promise<void>;
  private stopped = false;
  private dispose: (() => void) | undefined;

  constructor(private readonly options: WatchOptions) {
    this.done = this.run();
  }

  get last(): number {
    return this.events.at(-1)?.sequence ?? this.options.afterSequence ?? 0;
  }

  get taskId(): string {
    return this.options.taskId;
  }

  /** The sequence the watch started after. */
  get from(): number {
    return this.options.afterSequence ?? 0;
  }

  get final(): WatchedEvent | undefined {
    const last = this.events.at(-1);
    return last && FINAL.has(last.type) ? last : undefined;
  }

  /** Stops following (the scenario gives up); `done` resolves. */
  stop(): void {
    this.stopped = true;
    this.dispose?.();
  }

  private async run(): Promise<void> {
    const { taskId, token } = this.options;
    const stallMs = this.options.stallMs ?? 45_000;
    const deadline = Date.now() + (this.options.timeoutMs ?? 180_000);
    let round = this.options.routerIndex ?? 0;
    for (let opened = 0; !this.final && !this.stopped && Date.now() < deadline; opened++) {
      if (opened > 0) {
        this.resumes += 1;
        await sleep(Math.min(100 * opened, 1000));
      }
      const routers = this.options.routers();
      if (routers.length === 0) {
        await sleep(500);
        continue;
      }
      const router = routers[round++ % routers.length];
      const client = createClient({
        url: router.url.replace(/^http/, 'ws'),
        webSocketImpl: WebSocket,
        connectionParams: { authorization: `Bearer ${token}` },
        retryAttempts: 0,
        lazy: true,
        on: { closed: (event) => this.closeCodes.push((event as { code?: number }).code ?? 0) },
      });
      let stallTimer: NodeJS.Timeout | undefined;
      let stalled = false;
      const iterator = client.iterate<{ taskEvents: WatchedEvent }>({ query: QUERY, variables: { id: taskId, after: this.last } });
      const armStall = () => {
        clearTimeout(stallTimer);
        stallTimer = setTimeout(() => {
          stalled = true;
          this.stalls += 1;
          void iterator.return?.();
        }, stallMs);
      };
      this.dispose = () => void iterator.return?.();
      armStall();
      try {
        for await (const result of iterator) {
          armStall();
          for (const error of result.errors ?? []) this.errorCodes.push(String(error.extensions?.code ?? 'UNKNOWN'));
          const event = result.data?.taskEvents;
          if (!event) continue;
          if (event.sequence <= this.last) {
            this.duplicates += 1;
            continue;
          }
          if (event.sequence !== this.last + 1) this.gaps += 1;
          this.events.push(event);
        }
        if (!this.final && !stalled && !this.stopped) this.earlyCompletions += 1;
      } catch (error) {
        if (Array.isArray(error)) for (const e of error as { extensions?: { code?: string } }[]) this.errorCodes.push(String(e.extensions?.code ?? 'UNKNOWN'));
        else if (!(typeof (error as { code?: unknown })?.code === 'number')) this.errorCodes.push('socket');
      } finally {
        clearTimeout(stallTimer);
        this.dispose = undefined;
        await client.dispose();
      }
    }
  }
}

/**
 * What is wrong with a finished watch, in words (empty when the stream is coherent): sequences
 * 1..n without gap or duplicate, ending with the one final event; each STARTED of a later attempt
 * has a higher attempt; and for a success, the text of the last attempt is the output.
 */
export function streamProblems(watch: TaskWatch, task: { status: string; output: string | null }, options: { allowGaps?: boolean } = {}): string[] {
  const problems: string[] = [];
  const { events } = watch;
  const id = watch.taskId;
  if (events.length === 0) return [`${id}: no events`];
  if (watch.duplicates > 0) problems.push(`${id}: ${watch.duplicates} events received twice`);
  const from = watch.from + 1;
  if (options.allowGaps) {
    // Events that only a lost live log held are gone: the sequence may jump forward, never back.
    if (events.some((e, i) => e.sequence <= (i === 0 ? watch.from : events[i - 1].sequence))) problems.push(`${id}: sequences ${summarize(events.map((e) => e.sequence))} do not increase`);
  } else if (events.some((e, i) => e.sequence !== from + i)) problems.push(`${id}: sequences ${summarize(events.map((e) => e.sequence))} are not ${from}..${from + events.length - 1}`);
  const finals = events.filter((e) => FINAL.has(e.type));
  if (finals.length !== 1 || !FINAL.has(events.at(-1)!.type)) problems.push(`${id}: ${finals.length} final events, last is ${events.at(-1)!.type}`);
  else if (events.at(-1)!.type !== task.status) problems.push(`${id}: stream ended ${events.at(-1)!.type}, task is ${task.status}`);
  let attempt = 0;
  for (const event of events) {
    if (event.type !== 'STARTED') continue;
    if (event.attempt <= attempt) problems.push(`${id}: STARTED attempt ${event.attempt} after attempt ${attempt}`);
    attempt = event.attempt;
  }
  if (task.status === 'SUCCEEDED' && watch.from === 0 && watch.gaps === 0 && textOf(events) !== task.output) problems.push(`${id}: streamed text ${JSON.stringify(textOf(events).slice(0, 80))} differs from the output ${JSON.stringify(task.output?.slice(0, 80))}`);
  return problems;
}

/** The text a client shows: the deltas of the last attempt that STARTED. */
export function textOf(events: WatchedEvent[]): string {
  let text = '';
  for (const event of events) {
    if (event.type === 'STARTED') text = '';
    if (event.type === 'TOKEN') text += event.delta ?? '';
  }
  return text;
}

function summarize(sequences: number[]): string {
  return sequences.length > 30 ? `${sequences.slice(0, 30).join(',')}…` : sequences.join(',');
}
