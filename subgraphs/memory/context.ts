import type { EntityManager } from '@mikro-orm/postgresql';
import type DataLoader from 'dataloader';
import type { BaseContext } from '../../lib/subgraph-server.js';
import type { SessionRow } from './entities.js';

/** Per request: the verified caller, a fresh identity map and batched loaders. */
export interface Context extends BaseContext {
  em: EntityManager;
  /** The caller's sessions by id (for references); null when not theirs or without `memory:read`. */
  sessionById: DataLoader<string, SessionRow | null>;
  /** Base URL of the agent subgraph, asked whether the caller owns an agent. */
  agentUrl: string;
}
