import { readFileSync } from 'node:fs';
import DataLoader from 'dataloader';
import { parse } from 'graphql';
import type { MikroORM } from '@mikro-orm/postgresql';
import { databaseReachable, openServiceDatabase } from '../../lib/db.js';
import { createLogger } from '../../lib/logger.js';
import { ownerOf } from '../../lib/principal.js';
import { startSubgraphServer, type RunningServer } from '../../lib/subgraph-server.js';
import type { Context } from './context.js';
import { entities } from './entities.js';
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
  /** Base URL (no /graphql) of the agent subgraph, asked whether the caller owns an agent. */
  agentUrl: string;
  /** Base URL (no /graphql) of the memory subgraph, asked whether the caller owns a session. */
  memoryUrl: string;
  logLevel?: string;
}

const typeDefs = parse(readFileSync(new URL('./schema.graphql', import.meta.url), 'utf8'));

/** The task subgraph: tasks and their outbox, in the `task` schema. */
export async function startTaskSubgraph(config: TaskSubgraphConfig): Promise<RunningServer & { orm: MikroORM }> {
  const log = createLogger('task', config.logLevel);
  const orm = await openServiceDatabase({ databaseUrl: config.databaseUrl, schema: 'task', entities, migrations });
  const urls = { agentUrl: config.agentUrl.replace(/\/+$/, ''), memoryUrl: config.memoryUrl.replace(/\/+$/, '') };
  const server = await startSubgraphServer<Context>({
    name: 'task',
    port: config.port,
    host: config.host,
    typeDefs,
    resolvers,
    internalSecret: config.internalSecret,
    log,
    createContext: (base) => {
      const em = orm.em.fork();
      const ownerId = ownerOf(base.principal);
      return {
        ...base,
        em,
        taskById: new DataLoader((ids: readonly string[]) => tasksByIds(em, ownerId, ids)),
        lookups: serviceLookups(urls, base),
      };
    },
    readiness: async () => ({ database: await databaseReachable(orm) }),
    onClose: () => orm.close(),
  });
  return { ...server, orm };
}
