/**
 * The platform as separate processes (router, four subgraphs, N workers), the way Compose runs it,
 * on a fresh database, RabbitMQ vhost and Redis prefixes, every process pinned to the cores under
 * test. Workers come and go between runs; the rest stays up.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { generateJwtKeyPair } from '../../lib/jwt-keys.js';
import { createTestDatabase } from '../../tests/support/database.js';
import { freePort } from '../../tests/support/processes.js';
import { createTestVhost } from '../../tests/support/rabbitmq.js';
import { deleteRedisPrefix, REDIS_URL, spawnNode, waitForHealthy, type Child } from './support.js';

export interface BenchPlatform {
  url: string;
  env: Record<string, string>;
  databaseUrl: string;
  amqpUrl: string;
  services: Child[];
  workers: Child[];
  /** Starts or stops workers (pinned) until `count` run, and waits until the new ones are ready. */
  setWorkers: (count: number, extraEnv?: Record<string, string>) => Promise<void>;
  /** Stops the workers (SIGTERM: they finish or hand back what they hold). */
  stopWorkers: () => Promise<void>;
  /** Empties the task tables (between runs, so that every run starts on the same table sizes). */
  resetTasks: () => Promise<void>;
  stop: () => Promise<void>;
}

export async function startBenchPlatform(options: { cpus: string | null; env?: Record<string, string>; label: string; nodeArgs?: string[] }): Promise<BenchPlatform> {
  const db = await createTestDatabase(options.label);
  const vhost = await createTestVhost(options.label);
  const prefix = `bench:${options.label}:${randomBytes(4).toString('hex')}:`;
  const jwt = generateJwtKeyPair();
  const ports = { agent: await freePort(), task: await freePort(), memory: await freePort(), auth: await freePort(), router: await freePort() };
  const base = (port: number) => `http://127.0.0.1:${port}`;
  const env: Record<string, string> = {
    DATABASE_URL: db.url,
    AMQP_URL: vhost.url,
    REDIS_URL,
    EVENTS_PREFIX: `${prefix}ev:`,
    RATE_LIMIT_PREFIX: `${prefix}rl:`,
    // The limiter runs (one Redis round trip per request) but never refuses the load generator.
    RATE_LIMIT_PER_MINUTE: '100000000',
    RATE_LIMIT_AUTH_PER_MINUTE: '1000',
    EVENT_RETENTION_SECONDS: '600',
    INTERNAL_SECRET: randomBytes(32).toString('hex'),
    JWT_PRIVATE_KEY: jwt.privateKey,
    JWT_PUBLIC_KEY: jwt.publicKey,
    LOG_LEVEL: 'warn',
    ECHO_TOKEN_DELAY_MS: '0',
    AGENT_PORT: String(ports.agent),
    TASK_PORT: String(ports.task),
    MEMORY_PORT: String(ports.memory),
    AUTH_PORT: String(ports.auth),
    PORT: String(ports.router),
    AGENT_URL: base(ports.agent),
    TASK_URL: base(ports.task),
    MEMORY_URL: base(ports.memory),
    AUTH_URL: base(ports.auth),
    ...options.env,
  };
  const services: Child[] = [];
  const workers: Child[] = [];
  const stopWorkers = async () => {
    await Promise.all(workers.map((w) => w.stop(15_000)));
    workers.length = 0;
  };
  const stop = async () => {
    await stopWorkers();
    await Promise.all(services.map((s) => s.stop()));
    await db.drop().catch(() => undefined);
    await vhost.drop().catch(() => undefined);
    await deleteRedisPrefix(prefix);
  };
  try {
    await Promise.all(
      (['auth', 'agent', 'memory', 'task'] as const).map((name) => {
        const service = spawnNode(name, `subgraphs/${name}/main.ts`, env, { cpus: options.cpus, nodeArgs: options.nodeArgs });
        services.push(service);
        return waitForHealthy(`${env[`${name.toUpperCase()}_URL`]}/readyz`, service);
      }),
    );
    const router = spawnNode('router', 'router/main.ts', env, { cpus: options.cpus, nodeArgs: options.nodeArgs });
    services.push(router);
    await waitForHealthy(`${base(ports.router)}/readyz`, router);
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    url: `${base(ports.router)}/graphql`,
    env,
    databaseUrl: db.url,
    amqpUrl: vhost.url,
    services,
    workers,
    setWorkers: async (count, extraEnv = {}) => {
      const extra = workers.splice(count);
      await Promise.all(extra.map((w) => w.stop(15_000)));
      await Promise.all(
        Array.from({ length: count - workers.length }, async () => {
          const healthPort = await freePort();
          const worker = spawnNode(
            `worker ${workers.length + 1}`,
            'subgraphs/task/worker-main.ts',
            { ...env, WORKER_ID: `bench-w${workers.length + 1}-${randomBytes(3).toString('hex')}`, WORKER_HEALTH_PORT: String(healthPort), ...extraEnv },
            { cpus: options.cpus, nodeArgs: options.nodeArgs },
          );
          workers.push(worker);
          await waitForHealthy(`http://127.0.0.1:${healthPort}/readyz`, worker);
        }),
      );
    },
    stopWorkers,
    resetTasks: async () => {
      const client = new pg.Client({ connectionString: db.url });
      await client.connect();
      try {
        await client.query(`truncate "task"."tasks", "task"."outbox", "task"."task_events"`);
      } finally {
        await client.end();
      }
    },
    stop,
  };
}
