/**
 * The platform as separate processes (router, four subgraphs, N workers), the way Compose runs it,
 * on a fresh database, RabbitMQ vhost and Redis prefixes, every process pinned to the cores under
 * test once it is ready. Workers come and go between runs; the rest stays up.
 *
 * One run of `npm run bench` starts it once ({@link sharedPlatform}) for the sections that measure
 * it (subscriptions, then tasks), and stops it at the end ({@link stopSharedPlatform}).
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { generateJwtKeyPair } from '../../lib/jwt-keys.js';
import { createTestDatabase } from '../../tests/support/database.js';
import { createTestVhost } from '../../tests/support/rabbitmq.js';
import amqp from 'amqplib';
import { TASK_QUEUE } from '../../lib/messaging/types.js';
import { freePort, pinTree, spawnNode, waitForHealthy, type BenchChild as Child } from './processes.js';
import { deleteRedisKeys, REDIS_URL } from './redis.js';

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
  /** Empties the task tables and the work queue (between runs, so that every run starts on the same table sizes). */
  resetTasks: () => Promise<void>;
  /** Moves the services (idle meanwhile) to `cpus`, e.g. off the cores under test while a baseline runs there. */
  moveServices: (cpus: string) => void;
  /** Moves the services back to the cores they were started for. */
  restoreServices: () => void;
  stop: () => Promise<void>;
}

export interface PlatformOptions {
  /** The cores under test (`taskset -c`), or null. */
  cpus: string | null;
  /** Node flags of every process (profiling). */
  nodeArgs?: string[];
  /** Node flags of the router only, after `nodeArgs`. */
  routerNodeArgs?: string[];
  /** The router's output is also appended here. */
  routerLogFile?: string;
}

/**
 * The router's node flags, a deployment setting (docker-compose.yml and the Kubernetes manifest set
 * them too): a young generation large enough that what a subscriber holds while it waits for its
 * next event dies young instead of being promoted. With V8's default (16 MB semi-spaces) every wait
 * is promoted and full collections of the old generation come every few seconds above ~10,000
 * deliveries/s, each one a p99 spike.
 */
export const ROUTER_NODE_ARGS = ['--max-semi-space-size=64'];

let shared: { key: string; platform: Promise<BenchPlatform> } | null = null;

/**
 * The run's platform, started on first use; a caller that needs other node flags (a profiling knob)
 * gets a fresh one in its place.
 */
export async function sharedPlatform(options: PlatformOptions): Promise<BenchPlatform> {
  const key = JSON.stringify([options.cpus, options.nodeArgs ?? [], options.routerNodeArgs ?? [], options.routerLogFile ?? null]);
  if (shared && shared.key !== key) await stopSharedPlatform();
  if (!shared) {
    const platform = startBenchPlatform({ ...options, label: `bench${randomBytes(2).toString('hex')}` });
    shared = { key, platform };
    platform.catch(() => {
      if (shared?.platform === platform) shared = null;
    });
  }
  return shared.platform;
}

export async function stopSharedPlatform(): Promise<void> {
  const current = shared;
  shared = null;
  if (current) await (await current.platform.catch(() => null))?.stop();
}

export async function startBenchPlatform(options: PlatformOptions & { label: string }): Promise<BenchPlatform> {
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
    // The limiter runs (one Redis round trip per request, and per subscription) but never refuses the load generator.
    RATE_LIMIT_PER_MINUTE: '100000000',
    // One router process, measured by its pid.
    ROUTER_PROCESSES: '1',
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
    await deleteRedisKeys(REDIS_URL, [prefix]);
  };
  try {
    // All at once: the router serves the committed supergraph and is ready once the subgraphs answer.
    await Promise.all([
      ...(['auth', 'agent', 'memory', 'task'] as const).map((name) => {
        const service = spawnNode(name, `subgraphs/${name}/main.ts`, { env, cpus: options.cpus, nodeArgs: options.nodeArgs });
        services.push(service);
        return waitForHealthy(`${env[`${name.toUpperCase()}_URL`]}/readyz`, service);
      }),
      (async () => {
        const router = spawnNode('router', 'router/main.ts', {
          env,
          cpus: options.cpus,
          nodeArgs: [...(options.nodeArgs ?? []), ...(options.routerNodeArgs ?? [])],
          logFile: options.routerLogFile,
          // One socket per subscriber.
          raiseFileLimit: true,
        });
        services.push(router);
        await waitForHealthy(`${base(ports.router)}/readyz`, router);
      })(),
    ]);
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
            {
              env: { ...env, WORKER_ID: `bench-w${workers.length + 1}-${randomBytes(3).toString('hex')}`, WORKER_HEALTH_PORT: String(healthPort), ...extraEnv },
              cpus: options.cpus,
              nodeArgs: options.nodeArgs,
            },
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
      // Tasks queued by an earlier section (the subscriptions' tasks, which nothing runs) go too.
      const connection = await amqp.connect(vhost.url);
      try {
        const channel = await connection.createChannel();
        await channel.purgeQueue(TASK_QUEUE);
      } finally {
        await connection.close();
      }
    },
    moveServices: (cpus) => {
      for (const service of services) pinTree(service.pid, cpus);
    },
    restoreServices: () => {
      if (options.cpus) for (const service of services) pinTree(service.pid, options.cpus);
    },
    stop,
  };
}
