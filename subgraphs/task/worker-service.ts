import type { MikroORM } from '@mikro-orm/postgresql';
import { ConfigError, envInt, envPort, envString, readCommonConfig, subgraphBaseUrl } from '../../lib/config.js';
import { databaseReachable, openServiceDatabase } from '../../lib/db.js';
import { answerProbe, createRequestServer, sendJson, splitUrl } from '../../lib/graphql-http.js';
import { listen } from '../../lib/http.js';
import { createLogger } from '../../lib/logger.js';
import { answerMetrics, ServiceMetrics } from '../../lib/metrics.js';
import { createBroker } from '../../lib/messaging/index.js';
import type { MessageBroker } from '../../lib/messaging/types.js';
import { createTaskEventLog } from '../../lib/task-events/index.js';
import type { TaskEventLog } from '../../lib/task-events/types.js';
import { entities } from './entities.js';
import { memoryHistoryReader } from './execution/context-builder.js';
import { OutboxRelay } from './execution/outbox.js';
import { TaskWorker, type ProviderAccess } from './execution/worker.js';
import { migrations } from './migrations.js';
import { contextWindow, contextWindowsFromEnv, estimateTokens } from './providers/models.js';
import { createProviderRegistry, providerConfigFromEnv, type ProviderConfig } from './providers/registry.js';
import { streamWithRetries } from './providers/resilient.js';

type Env = Record<string, string | undefined>;

export interface TaskWorkerServiceConfig {
  databaseUrl: string;
  internalSecret: string;
  /** Base URL of the memory subgraph, where a session's history is read. */
  memoryUrl: string;
  amqpUrl?: string;
  redisUrl?: string;
  eventsPrefix?: string;
  eventRetentionSeconds?: number;
  providers: ProviderConfig;
  contextWindows: Record<string, number>;
  /** Tasks one worker runs at once (its prefetch): they mostly wait on the provider. @default 100 */
  concurrency: number;
  leaseMs: number;
  maxAttempts: number;
  coalesceMs: number;
  /** @default a random id */
  workerId?: string;
  /** Port of /healthz, /readyz and /metrics (0: a free one; -1: none, e.g. in-process). @default 8010 */
  healthPort: number;
  /** `/metrics` answers only this bearer token when set. */
  metricsToken?: string;
  host?: string;
  logLevel?: string;
}

export function taskWorkerConfigFromEnv(env: Env): TaskWorkerServiceConfig {
  const common = readCommonConfig(env);
  if (!common.databaseUrl) throw new ConfigError('DATABASE_URL must be set to the PostgreSQL URL (postgres://user:pass@host:5432/db).');
  return {
    databaseUrl: common.databaseUrl,
    internalSecret: common.internalSecret,
    metricsToken: common.metricsToken,
    memoryUrl: subgraphBaseUrl(env, 'memory'),
    amqpUrl: common.amqpUrl,
    redisUrl: common.redisUrl,
    eventsPrefix: common.eventsPrefix,
    eventRetentionSeconds: common.eventRetentionSeconds,
    providers: providerConfigFromEnv(env),
    contextWindows: contextWindowsFromEnv(env),
    concurrency: envInt(env, 'WORKER_CONCURRENCY', 100, { min: 1, max: 1000 }),
    leaseMs: envInt(env, 'TASK_LEASE_MS', 30_000, { min: 1000, max: 3_600_000 }),
    maxAttempts: envInt(env, 'TASK_MAX_ATTEMPTS', 3, { min: 1, max: 20 }),
    coalesceMs: envInt(env, 'TOKEN_COALESCE_MS', 15, { min: 0, max: 1000 }),
    workerId: envString(env, 'WORKER_ID'),
    healthPort: envInt(env, 'WORKER_HEALTH_PORT', 8010, { min: -1, max: 65535 }),
    host: envString(env, 'HOST', '127.0.0.1'),
    logLevel: common.logLevel,
  };
}

/**
 * The settings of a worker in a process of its own (`npm run start:worker`, Compose, Kubernetes).
 * It shares the work queue with the task service and the event log with the routers, so AMQP_URL
 * and REDIS_URL are required: without them it would wait on an in-process queue nobody publishes
 * to, and write events no subscriber sees, while tasks stayed QUEUED. (`npm start` runs its worker
 * in-process and reads taskWorkerConfigFromEnv instead.)
 */
export function standaloneWorkerConfigFromEnv(env: Env): TaskWorkerServiceConfig {
  const config = taskWorkerConfigFromEnv(env);
  if (!config.amqpUrl) {
    throw new ConfigError('AMQP_URL must be set (amqp://user:pass@host:5672) for a task worker in its own process: it takes tasks from the RabbitMQ queue the task service publishes to.');
  }
  if (!config.redisUrl) {
    throw new ConfigError('REDIS_URL must be set (redis://host:6379) for a task worker in its own process: its task events reach subscribers through Redis.');
  }
  return config;
}

/** Shared parts handed in by a process that runs several services (`npm start`). */
export interface TaskWorkerDeps {
  broker?: MessageBroker;
  eventLog?: TaskEventLog;
}

/**
 * A task worker process: takes tasks from the queue and runs them, relays the outbox rows it (and
 * any other process) wrote, reaps tasks of dead workers, and answers /healthz, /readyz and /metrics.
 */
export async function startTaskWorkerService(
  config: TaskWorkerServiceConfig,
  deps: TaskWorkerDeps = {},
): Promise<{ worker: TaskWorker; orm: MikroORM; url: string | null; metrics: ServiceMetrics; close: () => Promise<void> }> {
  const log = createLogger('worker', config.logLevel);
  const orm = await openServiceDatabase({ databaseUrl: config.databaseUrl, schema: 'task', entities, migrations });
  const broker = deps.broker ?? (await createBroker({ amqpUrl: config.amqpUrl, log }));
  const eventLog =
    deps.eventLog ??
    createTaskEventLog({ redisUrl: config.redisUrl, prefix: config.eventsPrefix, retentionSeconds: config.eventRetentionSeconds, autoPipelining: true, log });
  const registry = createProviderRegistry(config.providers);
  const providers: ProviderAccess = {
    get: (name) => registry.get(name),
    contextWindow: (provider, model) => contextWindow(provider, model, config.contextWindows),
    estimateTokens,
    stream: (provider, request, signal) => streamWithRetries(provider, request, { signal, ...config.providers.retry }),
  };
  const relay = new OutboxRelay({ orm, broker, eventLog, log });
  await relay.start();
  const metrics = new ServiceMetrics('worker');
  const finishedTasks = metrics.counter('tasks_finished_total', 'Tasks this worker finished, by status.', ['status']);
  // Submission to the end, for tasks that stream for seconds or minutes.
  const taskSeconds = metrics.histogram('task_duration_seconds', 'Time from a task\'s submission to its end, for the tasks this worker finished.', ['status'], [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600]);
  const worker = new TaskWorker({
    orm,
    broker,
    eventLog,
    relay,
    providers,
    readHistory: memoryHistoryReader(config.memoryUrl.replace(/\/+$/, ''), config.internalSecret),
    log,
    concurrency: config.concurrency,
    leaseMs: config.leaseMs,
    maxAttempts: config.maxAttempts,
    coalesceMs: config.coalesceMs,
    workerId: config.workerId,
    onFinished: (status, seconds) => {
      finishedTasks.inc({ status });
      taskSeconds.observe({ status }, seconds);
    },
  });
  metrics.observedGauge('tasks_running', 'Tasks this worker is running now.', () => worker.inFlight);
  await worker.start();

  let url: string | null = null;
  let closeHttp = async () => {};
  if (config.healthPort >= 0) {
    const readiness = async () => ({ database: await databaseReachable(orm), broker: broker.isConnected(), eventLog: await eventLog.ping().catch(() => false) });
    const server = createRequestServer(log, async (req, res) => {
      const { path } = splitUrl(req.url);
      if (await answerProbe(req, res, path, 'worker', readiness, { workerId: worker.workerId, inFlight: worker.inFlight })) return;
      if (!(await answerMetrics(req, res, path, metrics, config.metricsToken))) sendJson(res, 404, { error: 'not_found' });
    });
    const port = await listen(server, config.healthPort, config.host ?? '127.0.0.1');
    url = `http://${config.host ?? '127.0.0.1'}:${port}`;
    closeHttp = () => new Promise((resolve) => server.close(() => resolve()));
  }

  return {
    worker,
    orm,
    url,
    metrics,
    close: async () => {
      await worker.stop();
      await relay.stop();
      await closeHttp();
      if (!deps.broker) await broker.close();
      if (!deps.eventLog) await eventLog.close();
      await orm.close();
    },
  };
}
