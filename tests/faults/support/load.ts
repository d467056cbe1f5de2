import { randomUUID } from 'node:crypto';
import type { Cluster } from './cluster.js';
import { sleep } from './cluster.js';
import { TaskWatch } from './watch.js';

/** One GraphQL call through a router, as fetch saw it. */
export interface CallOutcome {
  /** HTTP status, or 0 when the connection failed (refused, reset). */
  status: number;
  data?: any;
  codes: string[];
  /** The failure, when there was no HTTP answer. */
  networkError?: string;
}

/** POSTs an operation to a router; never throws. */
export async function call(url: string, token: string, query: string, variables: Record<string, unknown> = {}, timeoutMs = 30_000): Promise<CallOutcome> {
  try {
    const response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ query, variables }),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await response.text();
    let body: { data?: any; errors?: { message: string; extensions?: { code?: string; stacktrace?: unknown } }[] } = {};
    try {
      body = JSON.parse(text);
    } catch {
      return { status: response.status, codes: ['NON_JSON'] };
    }
    const codes = (body.errors ?? []).map((e) => String(e.extensions?.code ?? 'NO_CODE'));
    // A stack trace or an internal message in an answer is a failure of its own.
    if ((body.errors ?? []).some((e) => e.extensions?.stacktrace !== undefined || /\n\s+at /.test(e.message))) codes.push('STACK_TRACE');
    return { status: response.status, data: body.data ?? undefined, codes };
  } catch (error) {
    const cause = (error as { cause?: { code?: string } }).cause;
    return { status: 0, codes: [], networkError: cause?.code ?? (error as Error).name ?? 'error' };
  }
}

export interface SubmittedTask {
  id: string;
  sessionId: string;
  watch?: TaskWatch;
  submittedAt: number;
}

export interface TaskLoadOptions {
  cluster: Cluster;
  /** Tasks submitted per second. */
  ratePerSecond: number;
  /** Sessions the tasks take turns in. @default 6 */
  sessions?: number;
  /** Words of each task's input (echo streams them back one token each). @default 40 */
  words?: number;
  /** Follow each task with a graphql-ws subscriber. @default true */
  subscribe?: boolean;
  /** The agent the tasks run on. @default the cluster user's echo agent */
  agentId?: string;
  /** A runTask without an answer (connection failed, 5xx, SERVICE_UNAVAILABLE) is retried with the same idempotency key. @default true */
  retrySubmit?: boolean;
  /** Stall threshold of each watch. */
  stallMs?: number;
  /**
   * No new task while this many submitted ones are unfinished (as their subscribers see them): the
   * load stays steady instead of piling up a queue on a machine that is slower than the rate.
   * @default 16
   */
  maxUnfinished?: number;
}

const RUN_TASK = 'mutation ($i: RunTaskInput!) { runTask(input: $i) { id status } }';

/**
 * A steady stream of tasks: every 1/rate seconds a runTask through the next live router (each
 * with an idempotency key, retried with the same key while it gets no clear answer, as a careful
 * client does), each followed by a {@link TaskWatch}. Counts every answer.
 */
export class TaskLoad {
  readonly tasks: SubmittedTask[] = [];
  /** runTask calls (tries included). */
  calls = 0;
  /** Answers with HTTP status ≥ 500. */
  http5xx = 0;
  /** Calls without an HTTP answer (connection refused or reset). */
  networkErrors = 0;
  /** Calls answered with GraphQL errors, by code. */
  readonly errorCodes = new Map<string, number>();
  /** Ticks at which no task was submitted because `maxUnfinished` were unfinished. */
  deferred = 0;
  /** Submissions that never got an id (all tries failed). */
  readonly unanswered: { key: string; codes: string[] }[] = [];
  private sessionIds: string[] = [];
  private running = false;
  private loop: Promise<void> | undefined;
  private readonly inFlight = new Set<Promise<unknown>>();
  private counter = 0;

  constructor(private readonly options: TaskLoadOptions) {}

  async prepare(): Promise<void> {
    const { cluster } = this.options;
    const router = cluster.liveRouters()[0];
    for (let i = 0; i < (this.options.sessions ?? 6); i++) {
      const created = await call(router.url, cluster.user.accessToken, 'mutation ($a: ID!) { createSession(agentId: $a) { id } }', { a: this.agentId });
      if (!created.data?.createSession) throw new Error(`createSession failed: ${JSON.stringify(created)}`);
      this.sessionIds.push(created.data.createSession.id);
    }
  }

  private get agentId(): string {
    return this.options.agentId ?? this.options.cluster.user.echoAgentId;
  }

  start(): void {
    this.running = true;
    this.loop = (async () => {
      const every = 1000 / this.options.ratePerSecond;
      let next = Date.now();
      while (this.running) {
        const unfinished = this.tasks.filter((t) => t.watch && !t.watch.final).length + this.inFlight.size;
        if (unfinished >= (this.options.maxUnfinished ?? 16)) {
          this.deferred += 1;
          next = Date.now() + every;
          await sleep(every);
          continue;
        }
        const submission = this.submit().finally(() => this.inFlight.delete(submission));
        this.inFlight.add(submission);
        next += every;
        await sleep(Math.max(0, next - Date.now()));
      }
    })();
  }

  /** Stops submitting and waits for the submissions under way (not for the tasks). */
  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
    await Promise.all([...this.inFlight]);
  }

  /** Waits until every watch has ended (final event, or its own timeout). */
  async watchesDone(): Promise<void> {
    await Promise.all(this.tasks.map((t) => t.watch?.done));
  }

  /** One task: runTask (retried with the same key while unanswered), then a watch. */
  async submit(input?: string): Promise<SubmittedTask | undefined> {
    const { cluster } = this.options;
    const n = ++this.counter;
    const sessionId = this.sessionIds[n % this.sessionIds.length];
    const key = randomUUID();
    const words = this.options.words ?? 40;
    const text = input ?? `task ${n}: ${Array.from({ length: words }, (_, i) => `w${i}`).join(' ')}`;
    const codes: string[] = [];
    for (let attempt = 0; attempt < 30; attempt++) {
      const routers = cluster.liveRouters();
      if (routers.length === 0) {
        await sleep(500);
        continue;
      }
      const router = routers[(n + attempt) % routers.length];
      this.calls += 1;
      const outcome = await call(router.url, cluster.user.accessToken, RUN_TASK, { i: { agentId: this.agentId, sessionId, input: text, idempotencyKey: key } });
      if (outcome.status >= 500) this.http5xx += 1;
      if (outcome.status === 0) this.networkErrors += 1;
      for (const code of outcome.codes) this.errorCodes.set(code, (this.errorCodes.get(code) ?? 0) + 1);
      codes.push(...outcome.codes, ...(outcome.networkError ? [outcome.networkError] : []));
      const id: string | undefined = outcome.data?.runTask?.id;
      if (id) {
        const task: SubmittedTask = { id, sessionId, submittedAt: Date.now() };
        if (this.options.subscribe ?? true) {
          task.watch = new TaskWatch({ routers: cluster.liveRouters, token: cluster.user.accessToken, taskId: id, routerIndex: n, stallMs: this.options.stallMs });
        }
        this.tasks.push(task);
        return task;
      }
      if (this.options.retrySubmit === false) break;
      await sleep(Math.min(250 * (attempt + 1), 2000));
    }
    this.unanswered.push({ key, codes });
    return undefined;
  }
}
