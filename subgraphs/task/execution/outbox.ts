import type { EntityManager, MikroORM } from '@mikro-orm/postgresql';
import type { Logger } from 'pino';
import { TASK_DEAD_LETTER_QUEUE, TASK_QUEUE, type MessageBroker } from '../../../lib/messaging/types.js';
import { FINAL_EVENT_TYPES, type TaskEvent, type TaskEventLog, type TaskEventType } from '../../../lib/task-events/types.js';
import { PipelineSql, statement } from './sql.js';

/** Outbox topics; besides `task.submitted` (to the work queue) each is also a RabbitMQ routing key. */
export const TOPIC_SUBMITTED = 'task.submitted';
export const TOPIC_CANCELLED = 'task.cancelled';
export const TOPIC_SUCCEEDED = 'task.succeeded';
export const TOPIC_FAILED = 'task.failed';

/**
 * Declares the work queue and its dead-letter queue. The relay and the workers both call it, with
 * the same arguments (RabbitMQ refuses a redeclaration that differs), so a task published before
 * any worker started is kept, not dropped as unroutable.
 */
export async function assertTaskQueues(broker: MessageBroker): Promise<void> {
  await broker.assertWorkQueue(TASK_QUEUE, { deadLetterQueue: TASK_DEAD_LETTER_QUEUE });
}

/** What a worker takes from TASK_QUEUE. */
export interface TaskMessage {
  taskId: string;
}

/** The payload of task.succeeded / task.failed / task.cancelled, as consumers (memory) read it. */
export interface TaskOutcome {
  taskId: string;
  ownerId: string;
  agentId: string;
  sessionId: string | null;
  status: 'SUCCEEDED' | 'FAILED' | 'CANCELLED';
  attempt: number;
  input: string;
  output: string | null;
  error: string | null;
  promptTokens: number | null;
  completionTokens: number | null;
  createdAt: string;
  finishedAt: string;
  /**
   * The last event sequence the finishing worker appended, when it knows it: a relay that appends
   * the final event for it (the worker could not) numbers it after this if the live log was lost.
   */
  lastSequence?: number;
}

/**
 * Appends a message to the outbox inside the caller's transaction: it is published after the
 * commit by the relay, and never lost if the process dies between the commit and the publish.
 */
export async function writeOutbox(tx: EntityManager, taskId: string, topic: string, payload: object, at = new Date()): Promise<void> {
  await tx.execute(`insert into "task"."outbox" (task_id, topic, payload, created_at) values (?, ?, ?::jsonb, ?)`, [
    taskId,
    topic,
    JSON.stringify(payload),
    at,
  ]);
}

interface OutboxRow {
  id: string;
  task_id: string;
  topic: string;
  payload: Record<string, unknown>;
}

/** Rows to relay, locked so that other relays skip them. $1 how many. */
const CLAIM_ROWS = statement(
  'outbox_claim',
  `select id, task_id, topic, payload from "task"."outbox" where published_at is null order by id limit $1 for update skip locked`,
);
/** $1 outbox ids. */
const MARK_PUBLISHED = statement('outbox_published', `update "task"."outbox" set published_at = now() where id = any($1::bigint[])`);
/** Copies finished tasks' events to task.task_events (idempotent), so replay outlives the live log; one array per column. */
const ARCHIVE = statement(
  'archive',
  `insert into "task"."task_events" (task_id, sequence, type, attempt, delta, at)
   select * from unnest($1::uuid[], $2::int[], $3::text[], $4::int[], $5::text[], $6::timestamptz[])
   on conflict (task_id, sequence) do nothing`,
);

const FINAL_BY_TOPIC: Record<string, TaskEventType> = {
  [TOPIC_SUCCEEDED]: 'SUCCEEDED',
  [TOPIC_FAILED]: 'FAILED',
  [TOPIC_CANCELLED]: 'CANCELLED',
};

export interface OutboxRelayOptions {
  orm: MikroORM;
  broker: MessageBroker;
  eventLog: TaskEventLog;
  log: Logger;
  /** How often to look for rows nobody announced (another process's, or after a failure). @default 1000 */
  pollMs?: number;
  /** Rows per transaction. @default 100 */
  batchSize?: number;
  /** Published rows are deleted after this long. @default 1 hour */
  keepPublishedMs?: number;
}

/**
 * Publishes the outbox: for each row, in order, the matching event goes to the task's event log
 * (QUEUED, or the final event if the process that finished the task could not append it) and the
 * message to RabbitMQ (the task to the work queue, outcomes to the events exchange), then the row
 * is stamped. Rows are claimed with FOR UPDATE SKIP LOCKED, so any number of relays (one per task
 * service and worker process) share the work; delivery is at least once, and every consumer is
 * idempotent. Finished tasks' events are archived to PostgreSQL here too, off the worker's path.
 */
export class OutboxRelay {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  private failures = 0;
  private lastCleanup = 0;
  private readonly pollMs: number;
  private readonly batchSize: number;
  private readonly keepPublishedMs: number;

  constructor(private readonly options: OutboxRelayOptions) {
    this.pollMs = options.pollMs ?? 1000;
    this.batchSize = options.batchSize ?? 100;
    this.keepPublishedMs = options.keepPublishedMs ?? 3_600_000;
  }

  /** Declares the task queues, then relays whatever is waiting and keeps polling. */
  async start(): Promise<void> {
    await assertTaskQueues(this.options.broker);
    this.schedule(0);
  }

  /** Runs the relay now (after a commit that wrote outbox rows), coalescing concurrent wakes. */
  wake(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.schedule(0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.run(), delayMs);
    this.timer.unref();
  }

  private async run(): Promise<void> {
    if (this.running || this.stopped) return;
    let next = this.pollMs;
    this.running = (async () => {
      try {
        do {
          this.again = false;
          while (!this.stopped && (await this.relayBatch()) === this.batchSize);
        } while (this.again && !this.stopped);
        this.failures = 0;
        await this.cleanup();
      } catch (error) {
        this.failures++;
        // Broker or database away: back off (up to 10 s) and try again; rows wait in the outbox.
        next = Math.min(10_000, 250 * 2 ** Math.min(this.failures, 6));
        if (this.failures === 1 || this.failures % 20 === 0) this.options.log.warn({ err: error, failures: this.failures }, 'outbox relay failed; retrying');
      }
    })();
    await this.running;
    this.running = undefined;
    this.schedule(this.again ? 0 : next);
  }

  /**
   * Relays up to batchSize rows in one transaction; returns how many rows it looked at. The rows of
   * one task go in order; different tasks go at once, so that the event-log appends and the
   * broker's confirms of a batch overlap instead of adding up, and the events of the tasks that
   * finished are archived in one insert.
   */
  private async relayBatch(): Promise<number> {
    const { count, failure } = await PipelineSql.of(this.options.orm).transaction(async (query) => {
      const rows = await query<OutboxRow>(CLAIM_ROWS, [this.batchSize]);
      const byTask = new Map<string, OutboxRow[]>();
      for (const row of rows) {
        const list = byTask.get(row.task_id);
        if (list) list.push(row);
        else byTask.set(row.task_id, [row]);
      }
      const done: string[] = [];
      const archive: TaskEvent[] = [];
      let failure: unknown;
      await Promise.all(
        [...byTask.values()].map(async (taskRows) => {
          for (const row of taskRows) {
            try {
              await this.relayOne(row, archive);
            } catch (error) {
              failure ??= error;
              return; // this task's later rows wait for the next run, to stay in order
            }
            done.push(row.id);
          }
        }),
      );
      // What was published stays published even when another row failed: commit, then report.
      if (archive.length > 0) await query(ARCHIVE, archiveColumns(archive));
      if (done.length > 0) await query(MARK_PUBLISHED, [done]);
      return { count: rows.length, failure };
    });
    if (failure) throw failure;
    return count;
  }

  private async relayOne(row: OutboxRow, archive: TaskEvent[]): Promise<void> {
    const { broker, eventLog } = this.options;
    const { task_id: taskId, topic, payload, id } = row;
    if (topic === TOPIC_SUBMITTED) {
      // QUEUED goes first so that it precedes the worker's STARTED; a retried relay appends it once.
      await eventLog.append(taskId, { type: 'QUEUED', attempt: Number(payload.attempts ?? 0) + 1 }, { onlyIfEmpty: true });
      await broker.sendToQueue(TASK_QUEUE, { taskId } satisfies TaskMessage, { messageId: `${taskId}:${id}` });
      return;
    }
    const final = FINAL_BY_TOPIC[topic];
    if (final) {
      const outcome = payload as unknown as TaskOutcome;
      // Usually the finishing process appended the final event already: the read for the archive
      // shows it, and the append is skipped (it would be refused).
      let events = await finishedEvents(eventLog, taskId);
      if (events.length === 0) {
        await eventLog.append(taskId, { type: final, attempt: Math.max(1, outcome.attempt), delta: final === 'FAILED' ? outcome.error : null }, { minSequence: outcome.lastSequence });
        events = await finishedEvents(eventLog, taskId);
      }
      archive.push(...events);
    }
    await broker.publishEvent(topic, payload, { messageId: `${topic}:${taskId}` });
  }

  private async cleanup(): Promise<void> {
    if (Date.now() - this.lastCleanup < 60_000) return;
    this.lastCleanup = Date.now();
    await this.options.orm.em
      .fork()
      .getConnection()
      .execute(`delete from "task"."outbox" where published_at < ?`, [new Date(Date.now() - this.keepPublishedMs)]);
  }
}

/** A finished task's events (none while it has no final event), to copy to task.task_events. */
async function finishedEvents(eventLog: TaskEventLog, taskId: string): Promise<TaskEvent[]> {
  const events = await eventLog.read(taskId, 0);
  return events.some((e) => FINAL_EVENT_TYPES.has(e.type)) ? events : [];
}

/** The events as the columns of ARCHIVE. */
function archiveColumns(events: TaskEvent[]): unknown[][] {
  return [events.map((e) => e.taskId), events.map((e) => e.sequence), events.map((e) => e.type), events.map((e) => e.attempt), events.map((e) => e.delta), events.map((e) => e.at)];
}
