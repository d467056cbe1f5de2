import { readFileSync } from 'node:fs';
import DataLoader from 'dataloader';
import { parse } from 'graphql';
import type { MikroORM } from '@mikro-orm/postgresql';
import { databaseReachable, openServiceDatabase } from '../../lib/db.js';
import { createLogger } from '../../lib/logger.js';
import { createBroker } from '../../lib/messaging/index.js';
import type { MessageBroker } from '../../lib/messaging/types.js';
import { ownerOf } from '../../lib/principal.js';
import { startSubgraphServer, type RunningServer } from '../../lib/subgraph-server.js';
import { createTaskEventLog } from '../../lib/task-events/index.js';
import type { TaskEventLog } from '../../lib/task-events/types.js';
import type { Context } from './context.js';
import { entities } from './entities.js';
import { OutboxRelay } from './execution/outbox.js';
import { createProviderRegistry, providerConfigFromEnv, type ProviderConfig } from './providers/registry.js';
import { serviceLookups } from './lookups.js';
import { migrations } from './migrations.js';
import { resolvers } from './resolvers/index.js';
import { tasksByIds } from './tasks.js';

export interface TaskSubgraphConfig {
  /** 0 picks a free port. */
  port: number;
  /** @default '127.0.0.1' */
  host?: string;
  databaseUrl: string;
  internalSecret: string;
  /** `/metrics` answers only this bearer token when set. */
  metricsToken?: string;
  /** Base URL (no /graphql) of the agent subgraph, asked whether the caller owns an agent. */
  agentUrl: string;
  /** Base URL (no /graphql) of the memory subgraph, asked whether the caller owns a session. */
  memoryUrl: string;
  /** RabbitMQ; unset means an in-process broker (only useful when the workers run in this process). */
  amqpUrl?: string;
  /** Redis for the task event log; unset means in memory (one process). */
  redisUrl?: string;
  /** Key prefix of the event log; the same for the router, this service and the workers. @default 'ap:' */
  eventsPrefix?: string;
  /** How long the live event log keeps a task's events. @default 86400 */
  eventRetentionSeconds?: number;
  /**
   * The provider settings the workers run with (OPENAI_*, ANTHROPIC_*): runTask refuses an agent
   * whose provider they lack. @default from the environment of this process
   */
  providers?: ProviderConfig;
  logLevel?: string;
}

/** Shared parts handed in by a process that runs several services (`npm start`). */
export interface TaskSubgraphDeps {
  broker?: MessageBroker;
  eventLog?: TaskEventLog;
}

const typeDefs = parse(readFileSync(new URL('./schema.graphql', import.meta.url), 'utf8'));

/** The task subgraph: tasks, their events and their outbox (relayed to RabbitMQ), in the `task` schema. */
export async function startTaskSubgraph(
  config: TaskSubgraphConfig,
  deps: TaskSubgraphDeps = {},
): Promise<RunningServer & { orm: MikroORM; relay: OutboxRelay; eventLog: TaskEventLog; broker: MessageBroker }> {
  const log = createLogger('task', config.logLevel);
  const orm = await openServiceDatabase({ databaseUrl: config.databaseUrl, schema: 'task', entities, migrations });
  const broker = deps.broker ?? (await createBroker({ amqpUrl: config.amqpUrl, log }));
  const eventLog =
    deps.eventLog ??
    createTaskEventLog({ redisUrl: config.redisUrl, prefix: config.eventsPrefix, retentionSeconds: config.eventRetentionSeconds, autoPipelining: true, log });
  const providerRegistry = createProviderRegistry(config.providers ?? providerConfigFromEnv(process.env));
  const checkProvider = (name: string) => providerRegistry.check(name);
  const relay = new OutboxRelay({ orm, broker, eventLog, log });
  await relay.start();
  const urls = { agentUrl: config.agentUrl.replace(/\/+$/, ''), memoryUrl: config.memoryUrl.replace(/\/+$/, '') };
  const server = await startSubgraphServer<Context>({
    name: 'task',
    port: config.port,
    host: config.host,
    typeDefs,
    resolvers,
    internalSecret: config.internalSecret,
    metricsToken: config.metricsToken,
    log,
    createContext: (base) => {
      const em = orm.em.fork();
      const ownerId = ownerOf(base.principal);
      return {
        ...base,
        em,
        taskById: new DataLoader((ids: readonly string[]) => tasksByIds(em, ownerId, ids)),
        lookups: serviceLookups(urls, base),
        relay,
        eventLog,
        checkProvider,
      };
    },
    readiness: async () => ({
      database: await databaseReachable(orm),
      broker: broker.isConnected(),
      eventLog: await eventLog.ping(),
    }),
    onClose: async () => {
      await relay.stop();
      if (!deps.broker) await broker.close();
      if (!deps.eventLog) await eventLog.close();
      await orm.close();
    },
  });
  return { ...server, orm, relay, eventLog, broker };
}
