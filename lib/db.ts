import { MikroORM, type EntitySchema, type Options } from '@mikro-orm/postgresql';
import { Migrator } from '@mikro-orm/migrations';
import type { MigrationObject } from '@mikro-orm/core';
import pg from 'pg';

export interface ServiceDatabaseOptions {
  /** postgres:// URL of the database (shared by services; each service has its own schema). */
  databaseUrl: string;
  /** The PostgreSQL schema this service owns, e.g. "auth". */
  schema: string;
  entities: EntitySchema<any, any>[];
  /** Ordered migrations; applied on start, each in its own transaction. */
  migrations: MigrationObject[];
  /** Connection pool size per process. @default 10 */
  poolMax?: number;
  debug?: boolean;
}

/**
 * Opens the service's MikroORM, creates its schema if needed and applies pending migrations.
 * Concurrent starts (several replicas) are serialised by an advisory lock on the schema's name.
 */
export async function openServiceDatabase(options: ServiceDatabaseOptions): Promise<MikroORM> {
  await ensureSchema(options.databaseUrl, options.schema);
  const config: Options = {
    clientUrl: options.databaseUrl,
    schema: options.schema,
    entities: options.entities,
    discovery: { warnWhenNoEntities: false },
    extensions: [Migrator],
    migrations: {
      tableName: 'mikro_orm_migrations',
      migrationsList: options.migrations,
      transactional: true,
      allOrNothing: true,
      silent: true,
    },
    pool: { min: 0, max: options.poolMax ?? 10 },
    // Our entities are plain objects checked by TypeScript; skip the runtime reflection.
    forceUndefined: false,
    allowGlobalContext: false,
    debug: options.debug ?? false,
  };
  const orm = await MikroORM.init(config);
  const lockKey = `migrate:${options.schema}`;
  const connection = orm.em.getConnection();
  const knex = connection.getKnex();
  await knex.transaction(async (trx) => {
    await trx.raw('select pg_advisory_xact_lock(hashtext(?))', [lockKey]);
    await orm.getMigrator().up();
  });
  return orm;
}

async function ensureSchema(databaseUrl: string, schema: string): Promise<void> {
  if (!/^[a-z_][a-z0-9_]*$/.test(schema)) throw new Error(`invalid schema name ${schema}`);
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await client.query(`create schema if not exists "${schema}"`);
  } catch (error) {
    // Two replicas racing on "create schema if not exists" can collide on the catalog's unique index.
    if ((error as { code?: string }).code !== '23505') throw error;
  } finally {
    await client.end();
  }
}

/** True when a query reaches the database within the pool's timeout (for /readyz). */
export async function databaseReachable(orm: MikroORM): Promise<boolean> {
  try {
    await orm.em.getConnection().execute('select 1');
    return true;
  } catch {
    return false;
  }
}
