import { randomUUID } from 'node:crypto';
import type { EntityManager } from '@mikro-orm/postgresql';
import { appError, badInput, notFound } from '../../lib/errors.js';
import { isUuid } from '../../lib/ids.js';
import { afterCursorFilter, pageSize, toConnection, type Connection } from '../../lib/pagination.js';
import { text } from '../../lib/validate.js';
import { TaskEntity, UNFINISHED_STATUSES, type TaskRow, type TaskStatus } from './entities.js';
import type { AgentSnapshot, Lookups } from './lookups.js';
import { TOPIC_CANCELLED, TOPIC_SUBMITTED, writeOutbox, type TaskOutcome } from './execution/outbox.js';
import { Batcher } from './execution/batcher.js';
import { isDataError, PipelineSql, statement, taskRowOf } from './execution/sql.js';

/** Whether the workers can run a provider: null when they can, else the reason (what to configure). */
export type ProviderCheck = (provider: string) => string | null;

export interface RunTaskFields {
  agentId: string;
  sessionId?: string | null;
  input: string;
  idempotencyKey?: string | null;
}

interface TaskRequest {
  agentId: string;
  sessionId: string | null;
  input: string;
  idempotencyKey: string | null;
}

function validateRequest(fields: RunTaskFields): TaskRequest {
  return {
    // Ids are compared with stored uuids, which PostgreSQL returns in lower case.
    agentId: fields.agentId.toLowerCase(),
    sessionId: fields.sessionId == null ? null : fields.sessionId.toLowerCase(),
    input: text(fields.input, 'input', { min: 1, max: 100_000 }),
    idempotencyKey: fields.idempotencyKey == null ? null : text(fields.idempotencyKey, 'idempotencyKey', { min: 1, max: 200 }),
  };
}

/** The task already queued under the request's key, or CONFLICT when the key named another task. */
function sameTaskOrConflict(existing: TaskRow, request: TaskRequest): TaskRow {
  const same =
    existing.agentId === request.agentId && existing.sessionId === request.sessionId && existing.input === request.input;
  if (!same) throw appError('CONFLICT', 'idempotencyKey was already used for a different task.', { field: 'idempotencyKey' });
  return existing;
}

async function runnableAgent(lookups: Lookups, agentId: string, checkProvider: ProviderCheck): Promise<AgentSnapshot> {
  const agent = isUuid(agentId) ? await lookups.agent(agentId) : null;
  if (!agent || agent.deletedAt !== null) throw notFound('Agent');
  if (agent.status !== 'ACTIVE') {
    throw badInput(`Agent is ${agent.status}: make it ACTIVE to run tasks.`, 'agentId');
  }
  // An unknown provider, or one the platform has no key for, is refused now rather than failed later.
  const problem = checkProvider(agent.provider);
  if (problem) throw badInput(`The agent cannot run tasks: ${problem}`, 'agentId');
  return agent;
}

async function checkSession(lookups: Lookups, sessionId: string, agentId: string): Promise<void> {
  const session = isUuid(sessionId) ? await lookups.session(sessionId) : null;
  if (!session) throw notFound('Session');
  if (session.agent.id.toLowerCase() !== agentId) {
    throw badInput('The session belongs to another agent: use one of this agent\'s sessions.', 'sessionId');
  }
}

/**
 * Tasks and their `task.submitted` outbox messages in one statement: one round trip and no
 * transaction held open for all the runTask calls of an event-loop turn, and each task commits
 * with its message or neither does. "on conflict do nothing" makes a concurrent call with the same
 * key (in this statement or another) wait for the first one's commit and then insert neither.
 * One array per column: id, owner, agent, session, input, provider, model, system prompt,
 * temperature, max tokens, idempotency key, created at, outbox payload.
 */
const INSERT_TASKS = statement(
  'insert',
  `with input as (
     select * from unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::text[], $7::text[], $8::text[],
                          $9::float8[], $10::int[], $11::text[], $12::timestamptz[], $13::text[])
       as i(id, owner_id, agent_id, session_id, input, provider, model, system_prompt, temperature, max_tokens, idempotency_key, created_at, payload)
   ), inserted as (
     insert into "task"."tasks"
       (id, owner_id, agent_id, session_id, input, status, provider, model, system_prompt, temperature,
        max_tokens, idempotency_key, created_at, updated_at)
     select id, owner_id, agent_id, session_id, input, 'QUEUED', provider, model, system_prompt, temperature,
            max_tokens, idempotency_key, created_at, created_at
       from input
     on conflict (owner_id, idempotency_key) where idempotency_key is not null do nothing
     returning *
   ), announced as (
     insert into "task"."outbox" (task_id, topic, payload, created_at)
     select i.id, '${TOPIC_SUBMITTED}', i.payload::jsonb, i.created_at from input i join inserted t on t.id = i.id
   )
   select * from inserted`,
);

/** A task to insert: the values of INSERT_TASKS' columns, in order. */
type NewTask = [string, string, string, string | null, string, string, string, string | null, number | null, number | null, string | null, Date, string];

const inserters = new WeakMap<PipelineSql, Batcher<NewTask, TaskRow | null>>();

/** Inserts through the batch of this pool's current turn; null when the idempotency key was taken. */
function insertTask(sql: PipelineSql, task: NewTask): Promise<TaskRow | null> {
  let batcher = inserters.get(sql);
  if (!batcher) {
    batcher = new Batcher<NewTask, TaskRow | null>(
      async (tasks) => {
        const rows = await sql.query(INSERT_TASKS, task.map((_, column) => tasks.map((t) => t[column])));
        const inserted = new Map(rows.map((row) => [row.id as string, taskRowOf(row)]));
        return tasks.map((t) => inserted.get(t[0]) ?? null);
      },
      { isolate: isDataError },
    );
    inserters.set(sql, batcher);
  }
  return batcher.add(task);
}

/**
 * Queues a task: checks the caller's agent (and session) through their services, copies the
 * agent's settings into the row, and writes the row and its `task.submitted` outbox message in one
 * statement (shared with the calls that arrive at the same time). Returns at once with the task QUEUED.
 */
export async function runTask(
  em: EntityManager,
  ownerId: string,
  fields: RunTaskFields,
  lookups: Lookups,
  checkProvider: ProviderCheck,
): Promise<TaskRow> {
  const request = validateRequest(fields);

  // A retry of a task already queued answers from the row alone, even if the agent changed since.
  if (request.idempotencyKey) {
    const existing = await em.findOne(TaskEntity, { ownerId, idempotencyKey: request.idempotencyKey });
    if (existing) return sameTaskOrConflict(existing, request);
  }

  // The remote checks run before the insert, so no connection is held while they wait.
  const agent = await runnableAgent(lookups, request.agentId, checkProvider);
  if (request.sessionId) await checkSession(lookups, request.sessionId, request.agentId);

  const now = new Date();
  const id = randomUUID();
  const inserted = await insertTask(PipelineSql.of(em), [
    id,
    ownerId,
    request.agentId,
    request.sessionId,
    request.input,
    agent.provider,
    agent.model,
    agent.systemPrompt,
    agent.temperature,
    agent.maxTokens,
    request.idempotencyKey,
    now,
    JSON.stringify({ taskId: id, attempts: 0 }),
  ]);
  if (!inserted) {
    // The select sees the winner's row: it committed before our insert gave up.
    const winner = await em.findOneOrFail(TaskEntity, { ownerId, idempotencyKey: request.idempotencyKey }, { refresh: true });
    return sameTaskOrConflict(winner, request);
  }
  return inserted;
}

/** The outcome message of a task that just finished (for the outbox). */
export function outcomeOf(task: TaskRow): TaskOutcome {
  return {
    taskId: task.id,
    ownerId: task.ownerId,
    agentId: task.agentId,
    sessionId: task.sessionId,
    status: task.status as TaskOutcome['status'],
    attempt: task.attempts,
    input: task.input,
    output: task.output,
    error: task.error,
    promptTokens: task.promptTokens,
    completionTokens: task.completionTokens,
    createdAt: task.createdAt.toISOString(),
    finishedAt: (task.finishedAt ?? new Date()).toISOString(),
  };
}

/**
 * Cancels one of the owner's tasks if it is QUEUED or RUNNING. The update is conditional on the
 * status, so a worker finishing the task at the same moment wins or loses cleanly: a task that
 * already finished is returned unchanged.
 */
export async function cancelTask(em: EntityManager, ownerId: string, id: string): Promise<TaskRow> {
  if (!isUuid(id)) throw notFound('Task');
  const now = new Date();
  return em.transactional(async (tx) => {
    const updated = await tx.execute<Record<string, unknown>[]>(
      `update "task"."tasks" set status = 'CANCELLED', finished_at = ?, updated_at = ?, worker_id = null, lease_expires_at = null
       where id = ? and owner_id = ? and status in (${UNFINISHED_STATUSES.map(() => '?').join(', ')})
       returning *`,
      [now, now, id, ownerId, ...UNFINISHED_STATUSES],
    );
    if (updated.length > 0) {
      const task = tx.map(TaskEntity, updated[0]);
      // The relay appends CANCELLED to the task's events (the final event subscribers see). A worker
      // running the task stops when its watch reads the CANCELLED status (every 250 ms), or sooner
      // when the log refuses its next TOKEN after CANCELLED; either aborts the provider request.
      await writeOutbox(tx, task.id, TOPIC_CANCELLED, outcomeOf(task), now);
      return task;
    }
    const task = await tx.findOne(TaskEntity, { id, ownerId }, { refresh: true });
    if (!task) throw notFound('Task');
    return task;
  });
}

/** One task of the owner, or null (missing or someone else's: the same answer). */
export async function findTask(em: EntityManager, ownerId: string, id: string): Promise<TaskRow | null> {
  if (!isUuid(id)) return null;
  return em.findOne(TaskEntity, { id, ownerId });
}

export async function listTasks(
  em: EntityManager,
  ownerId: string,
  args: { agentId?: string | null; status?: TaskStatus | null; first?: number | null; after?: string | null },
): Promise<Connection<TaskRow>> {
  const first = pageSize(args.first, 20);
  const after = afterCursorFilter(args.after);
  // An agent id that is not a uuid names no agent: an empty page, like an unknown one.
  if (args.agentId != null && !isUuid(args.agentId)) return toConnection([], first, 0);
  const where = {
    ownerId,
    ...(args.agentId != null ? { agentId: args.agentId.toLowerCase() } : {}),
    ...(args.status ? { status: args.status } : {}),
  };
  const [rows, totalCount] = await Promise.all([
    em.find(TaskEntity, { ...where, ...after }, { orderBy: { createdAt: 'asc', id: 'asc' }, limit: first + 1 }),
    em.count(TaskEntity, where),
  ]);
  return toConnection(rows, first, totalCount);
}

/** Batch for references: the owner's tasks among `ids`, in `ids` order. */
export async function tasksByIds(em: EntityManager, ownerId: string | null, ids: readonly string[]): Promise<(TaskRow | null)[]> {
  const valid = ids.filter(isUuid).map((id) => id.toLowerCase());
  if (!ownerId || valid.length === 0) return ids.map(() => null);
  const rows = await em.find(TaskEntity, { id: { $in: valid }, ownerId });
  const byId = new Map(rows.map((row) => [row.id, row]));
  return ids.map((id) => byId.get(id.toLowerCase()) ?? null);
}
