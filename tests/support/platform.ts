import { randomBytes } from 'node:crypto';
import { generateJwtKeyPair } from '../../lib/jwt-keys.js';
import { createTestDatabase } from './database.js';
import { createTestVhost } from './rabbitmq.js';
import { deleteRedisKeys } from './redis.js';
import { freePort, startProcess, waitForHealthy, type ServiceProcess } from './processes.js';

export interface RouterProcess {
  /** This router's GraphQL endpoint. */
  url: string;
  /** http://127.0.0.1:<port> */
  base: string;
  process: ServiceProcess;
}

export interface Platform {
  /** The (first) router's GraphQL endpoint. */
  url: string;
  routerBase: string;
  /** Router processes started so far (stopped ones included); the first is `url`. */
  routers: RouterProcess[];
  /** Starts one more router on a free port and waits until it is ready. */
  startRouter: () => Promise<RouterProcess>;
  subgraphs: Record<'agent' | 'task' | 'memory' | 'auth', string>;
  internalSecret: string;
  jwt: { privateKey: string; publicKey: string };
  env: Record<string, string>;
  processes: ServiceProcess[];
  /** Task worker processes started so far (killed ones included), with their health and metrics base URL. */
  workers: PlatformWorker[];
  /** Starts one more worker process and waits until it is ready. */
  startWorker: (env?: Record<string, string>) => Promise<PlatformWorker>;
  stop: () => Promise<void>;
}

export interface PlatformWorker {
  workerId: string;
  process: ServiceProcess;
  /** http://127.0.0.1:<health port>: /healthz, /readyz, /metrics. */
  healthBase: string;
}

export interface PlatformOptions {
  /** Extra environment for every process (rate limits, limits...). */
  env?: Record<string, string>;
  /** Use the machine's Redis with a fresh key prefix. @default true */
  redis?: boolean;
  /** Use the machine's RabbitMQ in a fresh vhost. @default true when workers > 0 */
  rabbitmq?: boolean;
  /** Task worker processes to start. @default 0 */
  workers?: number;
  /** The test stops and starts RabbitMQ: take the broker lock exclusively (see createTestVhost). @default false */
  restartsBroker?: boolean;
  /** Router processes to start (replicas sharing Redis, as behind a load balancer). @default 1 */
  routers?: number;
  /** Extra environment for the router processes only (e.g. `NODE_OPTIONS` for the inspector). */
  routerEnv?: Record<string, string>;
}

/**
 * The whole platform as separate processes, the way Compose and Kubernetes run it: the four
 * subgraphs and the router, each `node --import tsx <service>/main.ts`, on free ports, with a
 * database of its own, fresh JWT keys and a fresh internal secret.
 */
export async function startPlatform(label: string, options: PlatformOptions = {}): Promise<Platform> {
  const db = await createTestDatabase(label);
  const useRabbit = options.rabbitmq ?? (options.workers ?? 0) > 0;
  const vhost = useRabbit ? await createTestVhost(label, { restartsBroker: options.restartsBroker }) : undefined;
  const jwt = generateJwtKeyPair();
  const internalSecret = randomBytes(32).toString('hex');
  const ports = { agent: await freePort(), task: await freePort(), memory: await freePort(), auth: await freePort(), router: await freePort() };
  const subgraphs = {
    agent: `http://127.0.0.1:${ports.agent}`,
    task: `http://127.0.0.1:${ports.task}`,
    memory: `http://127.0.0.1:${ports.memory}`,
    auth: `http://127.0.0.1:${ports.auth}`,
  };
  const env: Record<string, string> = {
    DATABASE_URL: db.url,
    INTERNAL_SECRET: internalSecret,
    JWT_PRIVATE_KEY: jwt.privateKey,
    JWT_PUBLIC_KEY: jwt.publicKey,
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'warn',
    AGENT_PORT: String(ports.agent),
    TASK_PORT: String(ports.task),
    MEMORY_PORT: String(ports.memory),
    AUTH_PORT: String(ports.auth),
    AGENT_URL: subgraphs.agent,
    TASK_URL: subgraphs.task,
    MEMORY_URL: subgraphs.memory,
    AUTH_URL: subgraphs.auth,
    PORT: String(ports.router),
    ...(options.redis === false
      ? {}
      : (() => {
          const prefix = `test:${label}:${randomBytes(4).toString('hex')}:`;
          return { REDIS_URL: process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379', RATE_LIMIT_PREFIX: `${prefix}rl:`, EVENTS_PREFIX: `${prefix}ev:` };
        })()),
    ...(vhost ? { AMQP_URL: vhost.url } : {}),
    ...options.env,
  };
  const processes: ServiceProcess[] = [];
  const workers: PlatformWorker[] = [];
  const routers: RouterProcess[] = [];
  let workersNamed = 0;
  let routersNamed = 0;
  const stop = async () => {
    await Promise.all(processes.map((p) => p.stop()));
    await db.drop();
    await vhost?.drop();
    if (env.REDIS_URL) await deleteRedisKeys(env.REDIS_URL, [env.RATE_LIMIT_PREFIX, env.EVENTS_PREFIX]);
  };
  const startWorker = async (extra: Record<string, string> = {}) => {
    const workerId = `w${++workersNamed}-${randomBytes(3).toString('hex')}`;
    const healthPort = await freePort();
    const process = startProcess(`worker ${workerId}`, 'subgraphs/task/worker-main.ts', { ...env, WORKER_ID: workerId, WORKER_HEALTH_PORT: String(healthPort), ...extra });
    processes.push(process);
    const worker = { workerId, process, healthBase: `http://127.0.0.1:${healthPort}` };
    workers.push(worker);
    await waitForHealthy(`http://127.0.0.1:${healthPort}/readyz`, process, 120_000, 'worker');
    return worker;
  };
  const startRouter = async (port?: number) => {
    const routerPort = port ?? (await freePort());
    const base = `http://127.0.0.1:${routerPort}`;
    const process = startProcess(`router ${++routersNamed}`, 'router/main.ts', { ...env, ...options.routerEnv, PORT: String(routerPort) });
    processes.push(process);
    const router = { url: `${base}/graphql`, base, process };
    routers.push(router);
    await waitForHealthy(`${base}/readyz`, process, 60_000, 'router');
    return router;
  };
  try {
    // Subgraphs first (each applies its migrations), then the router, which checks them at /readyz.
    const services = (['auth', 'agent', 'memory', 'task'] as const).map((name) => {
      const service = startProcess(name, `subgraphs/${name}/main.ts`, env);
      processes.push(service);
      return waitForHealthy(`${subgraphs[name]}/readyz`, service, 60_000, name);
    });
    await Promise.all(services);
    await Promise.all([
      startRouter(ports.router),
      ...Array.from({ length: (options.routers ?? 1) - 1 }, () => startRouter()),
      ...Array.from({ length: options.workers ?? 0 }, () => startWorker()),
    ]);
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    url: `http://127.0.0.1:${ports.router}/graphql`,
    routerBase: `http://127.0.0.1:${ports.router}`,
    routers,
    startRouter: () => startRouter(),
    subgraphs,
    internalSecret,
    jwt,
    env,
    processes,
    workers,
    startWorker,
    stop,
  };
}
