import { readFileSync } from 'node:fs';
import DataLoader from 'dataloader';
import { parse } from 'graphql';
import type { MikroORM } from '@mikro-orm/postgresql';
import { databaseReachable, openServiceDatabase } from '../../lib/db.js';
import { createLogger } from '../../lib/logger.js';
import { ownerOf } from '../../lib/principal.js';
import { startSubgraphServer, type RunningServer } from '../../lib/subgraph-server.js';
import { agentsByIds } from './agents.js';
import type { Context } from './context.js';
import { entities } from './entities.js';
import { migrations } from './migrations.js';
import { resolvers } from './resolvers/index.js';

export interface AgentSubgraphConfig {
  port: number;
  host?: string;
  databaseUrl: string;
  internalSecret: string;
  /** `/metrics` answers only this bearer token when set. */
  metricsToken?: string;
  logLevel?: string;
}

const typeDefs = parse(readFileSync(new URL('./schema.graphql', import.meta.url), 'utf8'));

/** The agent subgraph: agents and their settings, in the `agent` schema. */
export async function startAgentSubgraph(config: AgentSubgraphConfig): Promise<RunningServer & { orm: MikroORM }> {
  const log = createLogger('agent', config.logLevel);
  const orm = await openServiceDatabase({ databaseUrl: config.databaseUrl, schema: 'agent', entities, migrations });
  const server = await startSubgraphServer<Context>({
    name: 'agent',
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
      return { ...base, em, agentById: new DataLoader((ids: readonly string[]) => agentsByIds(em, ownerId, ids)) };
    },
    readiness: async () => ({ database: await databaseReachable(orm) }),
    onClose: () => orm.close(),
  });
  return { ...server, orm };
}
