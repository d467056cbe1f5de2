/**
 * The statements a task runs through on its way (runTask's insert, a worker's claim and finish,
 * the outbox relay, the worker's watch), on the ORM's own connection pool but without the ORM:
 * parameterized and prepared once per connection, so that PostgreSQL plans each once and no SQL is
 * formatted in JavaScript, and no identity map is made per statement. MikroORM's `execute` costs
 * about four times the CPU of this per statement, which adds up at thousands of tasks a second.
 * Everything off that path goes through MikroORM as usual.
 */
import type { EntityManager, MikroORM } from '@mikro-orm/postgresql';
import type { TaskRow, TaskStatus } from '../entities.js';

/** A statement with a stable name: PostgreSQL prepares it once per connection. */
export interface Statement {
  readonly name: string;
  readonly text: string;
}

export function statement(name: string, text: string): Statement {
  return { name: `task_${name}`, text };
}

/** Runs one statement; resolves with its rows. */
export type Query = <T = Record<string, unknown>>(statement: Statement, values: unknown[]) => Promise<T[]>;

/** The part of a node-postgres client and of knex's client that this module uses. */
interface PgConnection {
  query(config: { name: string; text: string; values: unknown[] }): Promise<{ rows: unknown[] }>;
  query(text: string): Promise<unknown>;
}
interface PoolClient {
  acquireConnection(): Promise<PgConnection>;
  releaseConnection(connection: PgConnection): Promise<unknown>;
}

const instances = new WeakMap<object, PipelineSql>();

export class PipelineSql {
  private constructor(private readonly pool: PoolClient) {}

  /** The instance for this ORM's (or entity manager's) connection pool. */
  static of(source: MikroORM | EntityManager): PipelineSql {
    const em = 'em' in source ? source.em : source;
    // knex's client owns the pool (and disposes of connections that failed).
    const pool = em.getConnection().getKnex().client as unknown as PoolClient;
    let sql = instances.get(pool);
    if (!sql) {
      sql = new PipelineSql(pool);
      instances.set(pool, sql);
    }
    return sql;
  }

  /** One statement on a pooled connection (autocommit). */
  readonly query: Query = async <T>(statement: Statement, values: unknown[]): Promise<T[]> => {
    const connection = await this.pool.acquireConnection();
    try {
      return (await connection.query({ name: statement.name, text: statement.text, values })).rows as T[];
    } finally {
      await this.pool.releaseConnection(connection);
    }
  };

  /** Statements in one transaction on one connection, rolled back when `work` throws. */
  async transaction<T>(work: (query: Query) => Promise<T>): Promise<T> {
    const connection = await this.pool.acquireConnection();
    try {
      await connection.query('begin');
      let result: T;
      try {
        result = await work(async <R>(statement: Statement, values: unknown[]) =>
          (await connection.query({ name: statement.name, text: statement.text, values })).rows as R[],
        );
      } catch (error) {
        await connection.query('rollback').catch(() => undefined);
        throw error;
      }
      await connection.query('commit');
      return result;
    } finally {
      await this.pool.releaseConnection(connection);
    }
  }
}

/** PostgreSQL timestamps arrive as text on the ORM's connections (MikroORM's type parsers). */
function date(value: unknown): Date {
  return value instanceof Date ? value : new Date(value as string);
}

function dateOrNull(value: unknown): Date | null {
  return value == null ? null : date(value);
}

/** A `task.tasks` row (`returning *`) as the TaskRow the ORM would have made of it. */
export function taskRowOf(row: Record<string, unknown>): TaskRow {
  return {
    id: row.id as string,
    ownerId: row.owner_id as string,
    agentId: row.agent_id as string,
    sessionId: (row.session_id as string | null) ?? null,
    input: row.input as string,
    status: row.status as TaskStatus,
    provider: row.provider as string,
    model: row.model as string,
    systemPrompt: (row.system_prompt as string | null) ?? null,
    temperature: (row.temperature as number | null) ?? null,
    maxTokens: (row.max_tokens as number | null) ?? null,
    agentSettings: (row.agent_settings as Record<string, unknown> | null) ?? {},
    output: (row.output as string | null) ?? null,
    error: (row.error as string | null) ?? null,
    attempts: row.attempts as number,
    promptTokens: (row.prompt_tokens as number | null) ?? null,
    completionTokens: (row.completion_tokens as number | null) ?? null,
    totalTokens: (row.total_tokens as number | null) ?? null,
    idempotencyKey: (row.idempotency_key as string | null) ?? null,
    createdAt: date(row.created_at),
    startedAt: dateOrNull(row.started_at),
    finishedAt: dateOrNull(row.finished_at),
    updatedAt: date(row.updated_at),
    workerId: (row.worker_id as string | null) ?? null,
    leaseExpiresAt: dateOrNull(row.lease_expires_at),
  };
}

/**
 * A statement refused for its data (SQLSTATE class 22, data exception, or 23, integrity
 * constraint), rather than for the connection or the server: worth trying a batch's items alone.
 */
export function isDataError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^2[23][0-9A-Z]{3}$/.test(code);
}
