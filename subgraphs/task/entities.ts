import { EntitySchema } from '@mikro-orm/postgresql';

export type TaskStatus = 'QUEUED' | 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'CANCELLED';

/** The statuses a task can still leave; the others are final. */
export const UNFINISHED_STATUSES: readonly TaskStatus[] = ['QUEUED', 'RUNNING'];

/** A row of task.tasks, and the object the Task resolvers receive. */
export interface TaskRow {
  id: string;
  ownerId: string;
  agentId: string;
  sessionId: string | null;
  input: string;
  status: TaskStatus;
  /** Snapshot of the agent when the task was queued: later agent changes do not reach it. */
  provider: string;
  model: string;
  systemPrompt: string | null;
  temperature: number | null;
  maxTokens: number | null;
  /** Provider options beyond the columns above, for settings agents gain later; `{}` today. */
  agentSettings: Record<string, unknown>;
  output: string | null;
  error: string | null;
  attempts: number;
  promptTokens: number | null;
  completionTokens: number | null;
  totalTokens: number | null;
  idempotencyKey: string | null;
  createdAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
  updatedAt: Date;
  /** The worker holding a RUNNING task, and until when (it renews the lease while it works). */
  workerId: string | null;
  leaseExpiresAt: Date | null;
}

export const TaskEntity = new EntitySchema<TaskRow>({
  name: 'TaskRow',
  tableName: 'tasks',
  properties: {
    id: { type: 'uuid', primary: true },
    ownerId: { type: 'uuid', fieldName: 'owner_id' },
    agentId: { type: 'uuid', fieldName: 'agent_id' },
    sessionId: { type: 'uuid', fieldName: 'session_id', nullable: true },
    input: { type: 'text' },
    status: { type: 'text' },
    provider: { type: 'text' },
    model: { type: 'text' },
    systemPrompt: { type: 'text', fieldName: 'system_prompt', nullable: true },
    temperature: { type: 'double', nullable: true },
    maxTokens: { type: 'integer', fieldName: 'max_tokens', nullable: true },
    agentSettings: { type: 'json', fieldName: 'agent_settings' },
    output: { type: 'text', nullable: true },
    error: { type: 'text', nullable: true },
    attempts: { type: 'integer' },
    promptTokens: { type: 'integer', fieldName: 'prompt_tokens', nullable: true },
    completionTokens: { type: 'integer', fieldName: 'completion_tokens', nullable: true },
    totalTokens: { type: 'integer', fieldName: 'total_tokens', nullable: true },
    idempotencyKey: { type: 'text', fieldName: 'idempotency_key', nullable: true },
    createdAt: { type: 'Date', fieldName: 'created_at' },
    startedAt: { type: 'Date', fieldName: 'started_at', nullable: true },
    finishedAt: { type: 'Date', fieldName: 'finished_at', nullable: true },
    updatedAt: { type: 'Date', fieldName: 'updated_at' },
    workerId: { type: 'text', fieldName: 'worker_id', nullable: true },
    leaseExpiresAt: { type: 'Date', fieldName: 'lease_expires_at', nullable: true },
  },
});

/** A row of task.task_events: one event of a finished task, archived from the live log. */
export interface TaskEventRow {
  taskId: string;
  sequence: number;
  type: string;
  attempt: number;
  delta: string | null;
  at: Date;
}

export const TaskEventEntity = new EntitySchema<TaskEventRow>({
  name: 'TaskEventRow',
  tableName: 'task_events',
  properties: {
    taskId: { type: 'uuid', fieldName: 'task_id', primary: true },
    sequence: { type: 'integer', primary: true },
    type: { type: 'text' },
    attempt: { type: 'integer' },
    delta: { type: 'text', nullable: true },
    at: { type: 'Date' },
  },
});

/**
 * A row of task.outbox: a message written in the same transaction as the change it announces, so
 * it cannot be lost between the commit and the queue. A relay publishes unpublished rows to
 * RabbitMQ in id order and stamps `publishedAt` (the relay comes with task execution).
 */
export interface OutboxRow {
  /** bigserial, as a string (it may exceed 2^53). */
  id: string;
  taskId: string;
  /** The routing key, e.g. "task.submitted". */
  topic: string;
  payload: Record<string, unknown>;
  createdAt: Date;
  publishedAt: Date | null;
}

export const OutboxEntity = new EntitySchema<OutboxRow>({
  name: 'OutboxRow',
  tableName: 'outbox',
  properties: {
    id: { type: 'bigint', primary: true, autoincrement: true },
    taskId: { type: 'uuid', fieldName: 'task_id' },
    topic: { type: 'text' },
    payload: { type: 'json' },
    createdAt: { type: 'Date', fieldName: 'created_at' },
    publishedAt: { type: 'Date', fieldName: 'published_at', nullable: true },
  },
});

export const entities = [TaskEntity, OutboxEntity, TaskEventEntity];

/** An agent as this service knows it: the key of an entity the agent service owns. */
export interface AgentReference {
  __typename?: 'Agent';
  id: string;
}
