import { randomUUID } from 'node:crypto';
import type { EntityManager, MikroORM } from '@mikro-orm/postgresql';
import type { Logger } from 'pino';
import { isUuid } from '../../../lib/ids.js';
import { TASK_DEAD_LETTER_QUEUE, TASK_QUEUE, type Consumer, type Delivery, type MessageBroker } from '../../../lib/messaging/types.js';
import type { AppendOptions, TaskEvent, TaskEventLog, TaskEventType } from '../../../lib/task-events/types.js';
import { TaskEntity, type TaskRow } from '../entities.js';
import { outcomeOf } from '../tasks.js';
import { isAbortError } from '../providers/abort.js';
import type { CompletionRequest, LlmProvider, StreamChunk } from '../providers/types.js';
import { ProviderError } from '../providers/types.js';
import { buildRequest, ContextTooLargeError, type HistoryReader } from './context-builder.js';
import { Batcher } from './batcher.js';
import { isDataError, PipelineSql, statement, taskRowOf } from './sql.js';
import { assertTaskQueues, TOPIC_FAILED, TOPIC_SUBMITTED, TOPIC_SUCCEEDED, writeOutbox, type OutboxRelay, type TaskMessage, type TaskOutcome } from './outbox.js';

/** What the worker needs from the provider layer. */
export interface ProviderAccess {
  get(name: string): LlmProvider | undefined;
  contextWindow(provider: string, model: string): number;
  estimateTokens(text: string): number;
  /** Streams with bounded retries (before the first token) and a stall timeout. */
  stream(provider: LlmProvider, request: CompletionRequest, signal: AbortSignal): AsyncIterable<StreamChunk>;
}

export interface TaskWorkerOptions {
  orm: MikroORM;
  broker: MessageBroker;
  eventLog: TaskEventLog;
  relay: OutboxRelay;
  providers: ProviderAccess;
  readHistory: HistoryReader;
  log: Logger;
  /** @default a random id */
  workerId?: string;
  /** Tasks run at once by this worker (the queue's prefetch). @default 100 */
  concurrency?: number;
  /** How long a claim on a running task lasts without renewal. @default 30000 */
  leaseMs?: number;
  /**
   * How often the worker reads the status of every task it runs, in one query, to stop those that
   * were cancelled or taken over (the bound on how late a cancellation is noticed). @default 250
   */
  watchMs?: number;
  /** Attempts (runs) per task before it ends FAILED. @default 3 */
  maxAttempts?: number;
  /** How long token deltas are gathered into one TOKEN event; 0 = one event per event-loop turn. @default 15 */
  coalesceMs?: number;
  /** A QUEUED task nobody took for this long is published again. @default 300000 */
  requeueStuckAfterMs?: number;
  /** Told of every task this worker finishes: its status and seconds from submission to the end. */
  onFinished?: (status: 'SUCCEEDED' | 'FAILED', seconds: number) => void;
}

/** Why an attempt stopped early. */
type Stop = 'cancelled' | 'lost' | 'shutdown';

/** An attempt the watch keeps an eye on. */
interface WatchedAttempt {
  attempt: number;
  /** The watch generation when it was registered: a status read that started earlier says nothing of it. */
  since: number;
  stop: (reason: Stop) => void;
}

interface TaskState {
  id: string;
  status: string;
  worker_id: string | null;
  attempts: number;
}

class AttemptStopped extends Error {
  constructor(readonly reason: Stop) {
    super(reason);
  }
}

type AttemptResult =
  | { kind: 'succeeded'; output: string; promptTokens: number; completionTokens: number }
  | { kind: 'failed'; error: string }
  | { kind: 'retry'; error: string }
  | { kind: 'stopped'; reason: Stop };

const FINAL_STATUS = { SUCCEEDED: TOPIC_SUCCEEDED, FAILED: TOPIC_FAILED } as const;

/** Takes the tasks among $3 that are QUEUED, or RUNNING under an expired lease. $1 worker, $2 lease ms. */
const CLAIM = statement(
  'claim',
  `update "task"."tasks"
      set status = 'RUNNING', attempts = attempts + 1, started_at = now(), updated_at = now(),
          worker_id = $1, lease_expires_at = now() + ($2::float8 * interval '1 millisecond')
    where id = any($3::uuid[]) and (status = 'QUEUED' or (status = 'RUNNING' and lease_expires_at < now()))
    returning *`,
);

/** $1 lease ms, $2 task, $3 worker, $4 the attempt that failed. */
const NEXT_ATTEMPT = statement(
  'next_attempt',
  `update "task"."tasks" set attempts = attempts + 1, started_at = now(), updated_at = now(),
          lease_expires_at = now() + ($1::float8 * interval '1 millisecond')
    where id = $2 and worker_id = $3 and status = 'RUNNING' and attempts = $4 returning *`,
);

/**
 * Outcomes and their outbox messages in one statement, each only while this worker holds that
 * attempt. $1 worker, then one array per column: task, attempt, status, output, error, tokens
 * (prompt, completion, total), finished at, topic, payload.
 */
const FINISH = statement(
  'finish',
  `with outcome as (
     select * from unnest($2::uuid[], $3::int[], $4::text[], $5::text[], $6::text[], $7::int[], $8::int[], $9::int[], $10::timestamptz[], $11::text[], $12::text[])
       as o(id, attempts, status, output, error, prompt_tokens, completion_tokens, total_tokens, finished_at, topic, payload)
   ), finished as (
     update "task"."tasks" t
        set status = o.status, output = o.output, error = o.error, prompt_tokens = o.prompt_tokens,
            completion_tokens = o.completion_tokens, total_tokens = o.total_tokens, finished_at = o.finished_at,
            updated_at = o.finished_at, worker_id = null, lease_expires_at = null
       from outcome o
      where t.id = o.id and t.status = 'RUNNING' and t.worker_id = $1 and t.attempts = o.attempts
      returning t.id
   ), announced as (
     insert into "task"."outbox" (task_id, topic, payload, created_at)
     select o.id, o.topic, o.payload::jsonb, o.finished_at from outcome o join finished f on f.id = o.id
   )
   select id from finished`,
);

/** One outcome for FINISH. */
interface Outcome {
  taskId: string;
  attempts: number;
  status: 'SUCCEEDED' | 'FAILED';
  output: string | null;
  error: string | null;
  promptTokens: number | null;
  completionTokens: number | null;
  finishedAt: Date;
  payload: string;
}

/** $1 task ids. */
const TASK_STATES = statement('states', `select id, status, worker_id, attempts from "task"."tasks" where id = any($1::uuid[])`);

/** Extends the leases this worker holds among $3, answering every task's state. $1 worker, $2 lease ms. */
const RENEW_LEASES = statement(
  'renew_leases',
  `update "task"."tasks"
      set lease_expires_at = case when status = 'RUNNING' and worker_id = $1 then now() + ($2::float8 * interval '1 millisecond') else lease_expires_at end
    where id = any($3::uuid[])
    returning id, status, worker_id, attempts`,
);

/**
 * Runs tasks from the work queue: claims a task with a lease (renewed while it runs), builds its
 * context, streams the provider's answer as TOKEN events, and commits the outcome (with its outbox
 * message) before the queue message is acked. A claim is a conditional UPDATE, so a task runs on
 * one worker at a time and reaches SUCCEEDED at most once; a worker that dies leaves a lease that
 * expires, and the reaper (in every worker) hands the task to another or fails it after
 * `maxAttempts`. Messages that fail delivery too often arrive on the dead-letter queue, where the
 * task is failed with the reason.
 */
export class TaskWorker {
  readonly workerId: string;
  private readonly leaseMs: number;
  private readonly maxAttempts: number;
  private readonly coalesceMs: number;
  private readonly requeueStuckAfterMs: number;
  private consumers: Consumer[] = [];
  private reaperTimer: NodeJS.Timeout | undefined;
  private readonly running = new Map<string, AbortController>();
  private stopping = false;
  private readonly watchMs: number;
  private readonly watched = new Map<string, WatchedAttempt>();
  private watchTimer: NodeJS.Timeout | undefined;
  private watchGeneration = 0;
  private lastRenewal = 0;
  private watchStopped = false;
  private readonly sql: PipelineSql;
  private readonly claims = new Batcher<string, TaskRow | null>((ids) => this.claimMany(ids));
  private readonly finishes = new Batcher<Outcome, boolean>((outcomes) => this.finishMany(outcomes), { isolate: isDataError });

  constructor(private readonly options: TaskWorkerOptions) {
    this.workerId = options.workerId ?? `worker-${randomUUID().slice(0, 8)}`;
    this.sql = PipelineSql.of(options.orm);
    this.leaseMs = options.leaseMs ?? 30_000;
    this.maxAttempts = options.maxAttempts ?? 3;
    this.coalesceMs = options.coalesceMs ?? 15;
    this.requeueStuckAfterMs = options.requeueStuckAfterMs ?? 300_000;
    // Leases are renewed by the watch, every leaseMs / 3: it must look at least that often.
    this.watchMs = Math.min(options.watchMs ?? 250, Math.floor(this.leaseMs / 3));
  }

  async start(): Promise<void> {
    const { broker } = this.options;
    await assertTaskQueues(broker);
    this.consumers.push(await broker.consume<TaskMessage>(TASK_QUEUE, (d) => this.handle(d), { prefetch: this.options.concurrency ?? 100 }));
    this.consumers.push(await broker.consume<TaskMessage>(TASK_DEAD_LETTER_QUEUE, (d) => this.handleDeadLetter(d), { prefetch: 10 }));
    this.scheduleReaper();
    this.scheduleWatch();
    this.options.log.info({ workerId: this.workerId }, 'task worker started');
  }

  /** Tasks this worker is running now. */
  get inFlight(): number {
    return this.running.size;
  }

  /**
   * Stops taking tasks; lets the running ones finish for up to `graceMs`, then hands the rest back
   * to the queue (they start over on another worker as a new attempt).
   */
  async stop(graceMs = 10_000): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    clearTimeout(this.reaperTimer);
    const timer = setTimeout(() => {
      for (const controller of this.running.values()) controller.abort(new AttemptStopped('shutdown'));
    }, graceMs);
    // cancel() waits for the handlers in flight, which end by finishing or by handing back.
    await Promise.all(this.consumers.map((c) => c.cancel()));
    clearTimeout(timer);
    // The running tasks needed the watch (leases, cancellations) until they ended.
    this.watchStopped = true;
    clearTimeout(this.watchTimer);
    this.options.log.info({ workerId: this.workerId }, 'task worker stopped');
  }

  // ---------------------------------------------------------------- one delivery

  private async handle(delivery: Delivery<TaskMessage>): Promise<void> {
    const taskId = delivery.body?.taskId;
    if (!isUuid(taskId)) {
      this.options.log.warn({ body: delivery.body }, 'dropping a task message without a task id');
      return;
    }
    if (this.stopping) return this.passOn(taskId);
    let task = await this.claim(taskId);
    if (!task) return; // finished, cancelled, or running elsewhere under a live lease
    const log = this.options.log.child({ taskId, workerId: this.workerId });
    const controller = new AbortController();
    this.running.set(taskId, controller);
    // The last sequence this worker knows the task's log reached: QUEUED (1) precedes every run.
    // It is the relay's, appended when the task was submitted; the worker can write it back too.
    const known = new KnownLog(task);
    try {
      for (;;) {
        if (task.attempts > this.maxAttempts) {
          await this.finish(task, 'FAILED', { error: `WORKER_LOST: the task did not complete in ${this.maxAttempts} attempts.` });
          return;
        }
        const result = await this.runAttempt(task, controller, log, known);
        if (result.kind === 'succeeded') {
          await this.finish(task, 'SUCCEEDED', result, known);
          return;
        }
        if (result.kind === 'failed') {
          await this.finish(task, 'FAILED', { error: result.error }, known);
          return;
        }
        if (result.kind === 'stopped') {
          if (result.reason === 'shutdown') await this.handBack(task);
          return; // cancelled: cancelTask finished it; lost: another worker or the reaper has it
        }
        // A retryable failure after tokens were streamed: the client's text starts over.
        if (task.attempts >= this.maxAttempts) {
          await this.finish(task, 'FAILED', { error: result.error }, known);
          return;
        }
        log.warn({ attempt: task.attempts, error: result.error }, 'attempt failed; starting a new one');
        const next = await this.nextAttempt(task);
        if (!next) return;
        task = next;
      }
    } catch (error) {
      log.error({ err: error }, 'task handling failed; handing it back');
      await this.handBack(task).catch(() => undefined);
      throw error;
    } finally {
      this.running.delete(taskId);
    }
  }

  /** Takes the task if it is QUEUED, or RUNNING under an expired lease; null when it is not ours to run. */
  private claim(taskId: string): Promise<TaskRow | null> {
    return this.claims.add(taskId);
  }

  /** One statement for the tasks delivered in one turn; a task delivered twice is claimed once. */
  private async claimMany(taskIds: string[]): Promise<(TaskRow | null)[]> {
    const rows = await this.sql.query(CLAIM, [this.workerId, this.leaseMs, [...new Set(taskIds)]]);
    const claimed = new Map(rows.map((row) => [row.id as string, taskRowOf(row)]));
    return taskIds.map((id) => {
      const task = claimed.get(id) ?? null;
      claimed.delete(id);
      return task;
    });
  }

  private async nextAttempt(task: TaskRow): Promise<TaskRow | null> {
    const rows = await this.sql.query(NEXT_ATTEMPT, [this.leaseMs, task.id, this.workerId, task.attempts]);
    return rows.length > 0 ? taskRowOf(rows[0]) : null;
  }

  // ---------------------------------------------------------------- one attempt

  private async runAttempt(task: TaskRow, controller: AbortController, log: Logger, known: KnownLog): Promise<AttemptResult> {
    const { eventLog, providers } = this.options;
    const attempt = task.attempts;
    const started = await eventLog.append(task.id, { type: 'STARTED', attempt }, { maxAttempt: attempt, ...known.appendOptions() });
    if (!started) return { kind: 'stopped', reason: 'lost' }; // finished or taken over meanwhile
    known.record(started);

    const provider = providers.get(task.provider);
    if (!provider) return { kind: 'failed', error: `The provider "${task.provider}" is not configured on the workers.` };

    // Per attempt: an abort stops this attempt only; the controller of the delivery carries shutdown.
    const attemptController = new AbortController();
    const stop = (reason: Stop) => attemptController.abort(new AttemptStopped(reason));
    const onShutdown = () => stop('shutdown');
    controller.signal.addEventListener('abort', onShutdown, { once: true });
    if (controller.signal.aborted) onShutdown();

    // Cancellation, a takeover and lease renewal: the watch handles every running task at once.
    this.watched.set(task.id, { attempt, since: this.watchGeneration, stop });

    const tokens = new TokenBuffer(eventLog, task.id, attempt, this.coalesceMs, () => stop('lost'), known);
    let output = '';
    let usage: { promptTokens: number; completionTokens: number } | undefined;
    try {
      const request = await buildRequest(task, this.options.readHistory, {
        contextWindow: providers.contextWindow(task.provider, task.model),
        estimateTokens: providers.estimateTokens,
      });
      for await (const chunk of providers.stream(provider, request, attemptController.signal)) {
        if (attemptController.signal.aborted) break;
        if (chunk.type === 'delta') {
          if (chunk.text.length === 0) continue;
          output += chunk.text;
          tokens.push(chunk.text);
        } else {
          usage = { promptTokens: chunk.promptTokens, completionTokens: chunk.completionTokens };
        }
      }
      await tokens.flush();
      if (attemptController.signal.aborted) return { kind: 'stopped', reason: stopReason(attemptController.signal) };
      const promptTokens = usage?.promptTokens ?? request.messages.reduce((n, m) => n + providers.estimateTokens(m.content), providers.estimateTokens(request.systemPrompt ?? ''));
      return { kind: 'succeeded', output, promptTokens, completionTokens: usage?.completionTokens ?? providers.estimateTokens(output) };
    } catch (error) {
      await tokens.flush().catch(() => undefined);
      if (attemptController.signal.aborted) return { kind: 'stopped', reason: stopReason(attemptController.signal) };
      if (error instanceof ContextTooLargeError) return { kind: 'failed', error: error.message };
      if (error instanceof ProviderError) return error.retryable ? { kind: 'retry', error: error.message } : { kind: 'failed', error: error.message };
      if (isAbortError(error)) return { kind: 'stopped', reason: 'lost' };
      // The memory service or the event log failed us: worth another attempt.
      log.warn({ err: error }, 'attempt failed');
      return { kind: 'retry', error: `The task could not run: ${(error as Error).message}` };
    } finally {
      this.watched.delete(task.id);
      controller.signal.removeEventListener('abort', onShutdown);
    }
  }

  // ---------------------------------------------------------------- the watch

  private scheduleWatch(): void {
    if (this.watchStopped) return;
    this.watchTimer = setTimeout(() => {
      void this.watch().finally(() => this.scheduleWatch());
    }, this.watchMs);
    this.watchTimer.unref();
  }

  /**
   * One query for every attempt this worker runs, instead of a subscription and a timer per task:
   * stops those that were cancelled (cancelTask committed CANCELLED) or are no longer this worker's
   * attempt (reaped and claimed by another), and every leaseMs / 3 extends the leases of the rest.
   * A cancellation is noticed within `watchMs` plus a query.
   */
  private async watch(): Promise<void> {
    if (this.watched.size === 0) return;
    const generation = ++this.watchGeneration;
    const ids = [...this.watched.keys()];
    const renew = Date.now() - this.lastRenewal >= this.leaseMs / 3;
    try {
      const rows = renew
        ? await this.sql.query<TaskState>(RENEW_LEASES, [this.workerId, this.leaseMs, ids])
        : await this.sql.query<TaskState>(TASK_STATES, [ids]);
      if (renew) this.lastRenewal = Date.now();
      const byId = new Map(rows.map((row) => [row.id, row]));
      for (const id of ids) {
        const entry = this.watched.get(id);
        if (!entry || entry.since >= generation) continue;
        const row = byId.get(id);
        if (row?.status === 'CANCELLED') entry.stop('cancelled');
        else if (!row || row.status !== 'RUNNING' || row.worker_id !== this.workerId || row.attempts !== entry.attempt) entry.stop('lost');
      }
    } catch (error) {
      this.options.log.warn({ err: error, tasks: ids.length }, renew ? 'lease renewal failed' : 'task status check failed');
    }
  }

  // ---------------------------------------------------------------- outcomes

  /**
   * Commits the outcome and its outbox message in one statement, conditional on this worker
   * still holding this attempt (so a cancelled or reaped task is never overwritten), then appends
   * the final event. If the process dies right after the commit, the relay appends it.
   */
  private async finish(
    task: TaskRow,
    status: 'SUCCEEDED' | 'FAILED',
    result: { output?: string; error?: string; promptTokens?: number; completionTokens?: number },
    known?: KnownLog,
  ): Promise<boolean> {
    const finishedAt = new Date();
    const usage = { promptTokens: result.promptTokens ?? null, completionTokens: result.completionTokens ?? null };
    const outcome: TaskOutcome = {
      ...outcomeOf(task),
      status,
      output: result.output ?? null,
      error: result.error ?? null,
      ...usage,
      finishedAt: finishedAt.toISOString(),
      lastSequence: known?.sequence,
    };
    // One statement for the outcomes of one turn (no transaction held open): each commits with its
    // outbox message, and only while this worker still holds this attempt.
    const finished = await this.finishes.add({
      taskId: task.id,
      attempts: task.attempts,
      status,
      output: outcome.output,
      error: outcome.error,
      ...usage,
      finishedAt,
      payload: JSON.stringify(outcome),
    });
    if (!finished) return false;
    this.options.onFinished?.(status, (finishedAt.getTime() - task.createdAt.getTime()) / 1000);
    await this.appendFinal(task, status, result.error ?? null, known);
    return true;
  }

  private async finishMany(outcomes: Outcome[]): Promise<boolean[]> {
    const column = <T>(pick: (o: Outcome) => T) => outcomes.map(pick);
    const rows = await this.sql.query<{ id: string }>(FINISH, [
      this.workerId,
      column((o) => o.taskId),
      column((o) => o.attempts),
      column((o) => o.status),
      column((o) => o.output),
      column((o) => o.error),
      column((o) => o.promptTokens),
      column((o) => o.completionTokens),
      column((o) => (o.promptTokens !== null && o.completionTokens !== null ? o.promptTokens + o.completionTokens : null)),
      column((o) => o.finishedAt),
      column((o) => FINAL_STATUS[o.status]),
      column((o) => o.payload),
    ]);
    const finished = new Set(rows.map((row) => row.id));
    return outcomes.map((o) => finished.has(o.taskId));
  }

  private async appendFinal(task: TaskRow, type: TaskEventType, delta: string | null, known?: KnownLog): Promise<void> {
    try {
      await this.options.eventLog.append(task.id, { type, attempt: Math.max(1, task.attempts), delta }, known?.appendOptions() ?? {});
    } catch (error) {
      this.options.log.warn({ err: error, taskId: task.id }, 'final event not appended; the outbox relay will');
    }
    this.options.relay.wake();
  }

  /** Returns a task this worker holds to the queue (a new message through the outbox). */
  private async handBack(task: TaskRow): Promise<void> {
    const handedBack = await this.requeue(
      this.options.orm.em.fork(),
      `update "task"."tasks" set status = 'QUEUED', worker_id = null, lease_expires_at = null, updated_at = now()
       where id = ? and status = 'RUNNING' and worker_id = ? returning id, attempts`,
      [task.id, this.workerId],
    );
    if (handedBack > 0) this.options.relay.wake();
  }

  /**
   * A message that reached this worker after it began to stop (delivered while its consumer was
   * being cancelled): its task goes back to the queue as a new message through the outbox, and this
   * one is acked. Returning it to the broker instead would count toward its delivery limit, and a
   * task caught by a few rolling restarts would end dead-lettered without ever having failed.
   */
  private async passOn(taskId: string): Promise<void> {
    // A finished or cancelled task has nothing left to run.
    const passed = await this.requeue(this.options.orm.em.fork(), `select id, attempts from "task"."tasks" where id = ? and status in ('QUEUED', 'RUNNING')`, [taskId]);
    if (passed > 0) this.options.relay.wake();
  }

  /**
   * Runs `statement`, which returns `id, attempts` of the tasks to run again, and queues a new
   * message for each through the outbox in the same transaction. Returns how many it queued.
   */
  private requeue(em: EntityManager, statement: string, params: unknown[]): Promise<number> {
    return em.transactional(async (tx) => {
      const rows = await tx.execute<{ id: string; attempts: number }[]>(statement, params);
      for (const row of rows) await writeOutbox(tx, row.id, TOPIC_SUBMITTED, { taskId: row.id, attempts: row.attempts });
      return rows.length;
    });
  }

  /** A message delivered too many times: its task ends FAILED with the reason, if it has not ended. */
  private async handleDeadLetter(delivery: Delivery<TaskMessage>): Promise<void> {
    const taskId = delivery.body?.taskId;
    if (!isUuid(taskId)) return;
    const error = 'The task could not be processed: its message failed delivery too many times and was dead-lettered.';
    const finished = await this.failUnfinished(this.options.orm.em.fork(), `id = ?`, [taskId], error);
    for (const task of finished) await this.appendFinal(task, 'FAILED', error);
  }

  private async failUnfinished(em: EntityManager, where: string, params: unknown[], error: string): Promise<TaskRow[]> {
    return em.transactional(async (tx) => {
      const rows = await tx.execute(
        `update "task"."tasks" set status = 'FAILED', error = ?, finished_at = now(), updated_at = now(), worker_id = null, lease_expires_at = null
         where status in ('QUEUED', 'RUNNING') and ${where} returning *`,
        [error, ...params],
      );
      const tasks = rows.map((row) => tx.map(TaskEntity, row));
      for (const task of tasks) await writeOutbox(tx, task.id, TOPIC_FAILED, outcomeOf(task));
      return tasks;
    });
  }

  // ---------------------------------------------------------------- the reaper

  private scheduleReaper(): void {
    if (this.stopping) return;
    // Jitter keeps the reapers of many workers from running in step.
    const delay = Math.floor(this.leaseMs / 2 + Math.random() * (this.leaseMs / 4));
    this.reaperTimer = setTimeout(() => {
      void this.reap()
        .catch((error) => this.options.log.warn({ err: error }, 'reaper failed'))
        .finally(() => this.scheduleReaper());
    }, delay);
    this.reaperTimer.unref();
  }

  /**
   * Tasks whose worker died: RUNNING past their lease. With attempts left they go back to the
   * queue; without, they end FAILED with WORKER_LOST. QUEUED tasks that nobody took for a long
   * time (a message lost by a broker) are published again; a duplicate message is harmless, since
   * only one claim succeeds.
   */
  async reap(): Promise<{ requeued: number; failed: number; republished: number }> {
    const em = this.options.orm.em.fork();
    const requeued = await this.requeue(
      em,
      `update "task"."tasks" set status = 'QUEUED', worker_id = null, lease_expires_at = null, updated_at = now()
       where id in (select id from "task"."tasks" where status = 'RUNNING' and lease_expires_at < now() and attempts < ?
                    order by lease_expires_at limit 100 for update skip locked)
       returning id, attempts`,
      [this.maxAttempts],
    );
    const failed = await this.failUnfinished(
      em.fork(),
      `id in (select id from "task"."tasks" where status = 'RUNNING' and lease_expires_at < now() and attempts >= ? limit 100 for update skip locked)`,
      [this.maxAttempts],
      `WORKER_LOST: the worker running this task stopped, and ${this.maxAttempts} attempts are used up.`,
    );
    for (const task of failed) await this.appendFinal(task, 'FAILED', task.error);
    const republished = await this.requeue(
      em.fork(),
      `update "task"."tasks" t set updated_at = now()
       where t.id in (select id from "task"."tasks" where status = 'QUEUED' and updated_at < now() - (? * interval '1 millisecond')
                      order by updated_at limit 100 for update skip locked)
         and not exists (select 1 from "task"."outbox" o where o.task_id = t.id and o.published_at is null)
       returning t.id, t.attempts`,
      [this.requeueStuckAfterMs],
    );
    if (requeued + republished > 0) this.options.relay.wake();
    if (requeued + failed.length + republished > 0) this.options.log.info({ requeued, failed: failed.length, republished }, 'reaper acted');
    return { requeued, failed: failed.length, republished };
  }
}

function stopReason(signal: AbortSignal): Stop {
  return signal.reason instanceof AttemptStopped ? signal.reason.reason : 'lost';
}

/**
 * What a worker knows of a task's event log: the events it can write back — the QUEUED that opens
 * every log and the ones it appended — kept so that a log lost with a Redis restart is written back
 * under the same sequences (AppendOptions.restore) and resuming subscribers miss nothing. The last
 * of them is the last sequence the worker knows the log reached. Holds the text streamed so far.
 */
class KnownLog {
  /**
   * Starts with the relay's QUEUED as appended on submission (attempt 1, sequence 1); its time is
   * the task's creation, which the relay's append follows by moments.
   */
  private readonly events: TaskEvent[];

  constructor(task: TaskRow) {
    this.events = [{ taskId: task.id, sequence: 1, type: 'QUEUED', attempt: 1, delta: null, at: task.createdAt.toISOString() }];
  }

  get sequence(): number {
    return this.events[this.events.length - 1].sequence;
  }

  record(event: TaskEvent): void {
    this.events.push(event);
  }

  appendOptions(): AppendOptions {
    return { minSequence: this.sequence, restore: () => this.events };
  }
}

/**
 * Gathers deltas into one TOKEN event per `coalesceMs` (or per event-loop turn when 0), appended
 * in order, one append in flight at a time. A refused append (the task finished or another
 * attempt took over) calls `onRefused`.
 */
class TokenBuffer {
  private pending: string[] = [];
  private timer: NodeJS.Timeout | NodeJS.Immediate | undefined;
  private chain: Promise<void> = Promise.resolve();
  private failure: unknown;

  constructor(
    private readonly eventLog: TaskEventLog,
    private readonly taskId: string,
    private readonly attempt: number,
    private readonly coalesceMs: number,
    private readonly onRefused: () => void,
    /** The task's last known sequence and this worker's events, advanced by each append. */
    private readonly known: KnownLog,
  ) {}

  push(text: string): void {
    if (this.failure) throw this.failure;
    this.pending.push(text);
    if (this.timer) return;
    this.timer = this.coalesceMs > 0 ? setTimeout(() => this.drain(), this.coalesceMs) : setImmediate(() => this.drain());
  }

  /** Appends whatever is pending and waits for every append so far. */
  async flush(): Promise<void> {
    this.drain();
    await this.chain;
    if (this.failure) throw this.failure;
  }

  private drain(): void {
    if (this.timer) {
      if (this.coalesceMs > 0) clearTimeout(this.timer as NodeJS.Timeout);
      else clearImmediate(this.timer as NodeJS.Immediate);
      this.timer = undefined;
    }
    if (this.pending.length === 0) return;
    const delta = this.pending.join('');
    this.pending = [];
    this.chain = this.chain.then(async () => {
      if (this.failure) return;
      try {
        const appended = await this.eventLog.append(this.taskId, { type: 'TOKEN', attempt: this.attempt, delta }, { maxAttempt: this.attempt, ...this.known.appendOptions() });
        if (!appended) this.onRefused();
        else this.known.record(appended);
      } catch (error) {
        this.failure = error;
      }
    });
  }
}
