import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import pg from 'pg';
import { rabbitmqctl } from '../../support/rabbitmq.js';
import { sleep } from './cluster.js';

/**
 * Stopping and starting the machine's shared services, the way an operator or a crash would, and
 * always able to bring them back: every scenario calls the matching `ensure…` in its `finally`.
 */

function run(command: string, args: string[], timeoutMs = 60_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { timeout: timeoutMs }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${command} ${args.join(' ')} failed: ${stderr || error.message}`, { cause: error }));
      else resolve(stdout);
    });
  });
}

// ---------------------------------------------------------------- Redis

export const REDIS_PORT = Number(new URL(process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379').port || 6379);

/** The settings the running Redis was started with, to start it again exactly so. */
export interface RedisServerSettings {
  port: number;
  bind: string;
  dir: string;
  logfile: string;
  save: string;
  appendonly: string;
}

async function redisCli(...args: string[]): Promise<string> {
  return run('redis-cli', ['-p', String(REDIS_PORT), ...args], 10_000);
}

export async function redisAnswers(): Promise<boolean> {
  try {
    return (await redisCli('ping')).trim() === 'PONG';
  } catch {
    return false;
  }
}

/** Reads the running server's configuration (CONFIG GET), with the machine's defaults for what it cannot read. */
export async function readRedisSettings(): Promise<RedisServerSettings> {
  const get = async (name: string, fallback: string) => {
    const lines = (await redisCli('config', 'get', name).catch(() => '')).split('\n');
    return lines.length >= 2 && lines[0].trim() === name ? lines[1].trim() : fallback;
  };
  return {
    port: REDIS_PORT,
    bind: await get('bind', '127.0.0.1 -::1'),
    dir: await get('dir', '/var/lib/redis'),
    logfile: await get('logfile', '/var/log/redis/ci.log'),
    save: await get('save', ''),
    appendonly: await get('appendonly', 'no'),
  };
}

/** The command line that starts Redis with `settings` (daemonized). */
export function redisStartArgs(settings: RedisServerSettings): string[] {
  const args = ['--daemonize', 'yes', '--bind', ...settings.bind.split(/\s+/).filter(Boolean), '--port', String(settings.port), '--save', settings.save, '--appendonly', settings.appendonly];
  if (settings.dir) args.push('--dir', settings.dir);
  if (settings.logfile) args.push('--logfile', settings.logfile);
  return args;
}

/** `redis-cli shutdown nosave`: every key is gone (the machine's Redis keeps nothing on disk). */
export async function stopRedis(): Promise<void> {
  await redisCli('shutdown', 'nosave').catch(() => undefined);
  for (let i = 0; i < 100 && (await redisAnswers()); i++) await sleep(100);
}

/** Starts Redis with `settings` (creating its directories) unless it answers, and waits for PONG. */
export async function startRedis(settings: RedisServerSettings, timeoutMs = 30_000): Promise<void> {
  if (await redisAnswers()) return;
  if (settings.dir) await mkdir(settings.dir, { recursive: true });
  if (settings.logfile) await mkdir(settings.logfile.replace(/\/[^/]*$/, '') || '/', { recursive: true });
  await run('redis-server', redisStartArgs(settings));
  const deadline = Date.now() + timeoutMs;
  while (!(await redisAnswers())) {
    if (Date.now() > deadline) throw new Error(`Redis did not answer PING within ${timeoutMs} ms after redis-server ${redisStartArgs(settings).join(' ')}`);
    await sleep(100);
  }
}

// ---------------------------------------------------------------- RabbitMQ

export async function stopRabbitMq(): Promise<void> {
  await rabbitmqctl('stop_app');
}

/** Starts the RabbitMQ application (a no-op when it runs) and waits until it serves clients. */
export async function startRabbitMq(): Promise<void> {
  await rabbitmqctl('start_app');
  await rabbitmqctl('await_startup');
}

// ---------------------------------------------------------------- PostgreSQL

/** Terminates every connection to `databaseUrl`'s database but this one; returns how many. */
export async function terminateDatabaseConnections(databaseUrl: string): Promise<number> {
  const name = decodeURIComponent(new URL(databaseUrl).pathname.slice(1));
  const admin = new pg.Client({ connectionString: databaseUrl });
  await admin.connect();
  try {
    const { rows } = await admin.query(`select pg_terminate_backend(pid) as done from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()`, [name]);
    return rows.filter((r) => r.done).length;
  } finally {
    await admin.end();
  }
}
