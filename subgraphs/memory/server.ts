import { readFileSync } from 'node:fs';
import DataLoader from 'dataloader';
import { parse } from 'graphql';
import type { MikroORM } from '@mikro-orm/postgresql';
import { databaseReachable, openServiceDatabase } from '../../lib/db.js';
import { createLogger } from '../../lib/logger.js';
import { createBroker } from '../../lib/messaging/index.js';
import type { MessageBroker } from '../../lib/messaging/types.js';
import { ownerOf, type Principal } from '../../lib/principal.js';
import { startSubgraphServer, type RunningServer } from '../../lib/subgraph-server.js';
import type { Context } from './context.js';
import { entities } from './entities.js';
import { migrations } from './migrations.js';
import { resolvers } from './resolvers/index.js';
import { sessionsByIds } from './sessions.js';
import { consumeTaskOutcomes } from './task-outcomes.js';

export interface MemorySubgraphConfig {
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
  /** RabbitMQ, where task outcomes arrive; unset means an in-process broker (`npm start`). */
  amqpUrl?: string;
  logLevel?: string;
}

/** Shared parts handed in by a process that runs several services (`npm start`). */
export interface MemorySubgraphDeps {
  broker?: MessageBroker;
}

const typeDefs = parse(readFileSync(new URL('./schema.graphql', import.meta.url), 'utf8'));

/** Whose sessions a reference may resolve to: the caller's, and only with `memory:read`. */
function referenceOwner(principal: Principal): string | null {
  return (principal.scopes as string[]).includes('memory:read') ? ownerOf(principal) : null;
}

/** The memory subgraph: sessions and their messages, in the `memory` schema. */
export async function startMemorySubgraph(config: MemorySubgraphConfig, deps: MemorySubgraphDeps = {}): Promise<RunningServer & { orm: MikroORM }> {
  const log = createLogger('memory', config.logLevel);
  const orm = await openServiceDatabase({ databaseUrl: config.databaseUrl, schema: 'memory', entities, migrations });
  const broker = deps.broker ?? (await createBroker({ amqpUrl: config.amqpUrl, log }));
  const outcomes = await consumeTaskOutcomes(orm, broker, log);
  const agentUrl = config.agentUrl.replace(/\/+$/, '');
  const server = await startSubgraphServer<Context>({
    name: 'memory',
    port: config.port,
    host: config.host,
    typeDefs,
    resolvers,
    internalSecret: config.internalSecret,
    metricsToken: config.metricsToken,
    log,
    createContext: (base) => {
      const em = orm.em.fork();
      const ownerId = referenceOwner(base.principal);
      return { ...base, em, agentUrl, sessionById: new DataLoader((ids: readonly string[]) => sessionsByIds(em, ownerId, ids)) };
    },
    readiness: async () => ({ database: await databaseReachable(orm), broker: broker.isConnected() }),
    onClose: async () => {
      await outcomes.cancel();
      if (!deps.broker) await broker.close();
      await orm.close();
    },
  });
  return { ...server, orm };
}
