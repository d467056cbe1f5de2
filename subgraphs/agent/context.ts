import type { EntityManager } from '@mikro-orm/postgresql';
import type DataLoader from 'dataloader';
import type { BaseContext } from '../../lib/subgraph-server.js';
import type { AgentRow } from './entities.js';

/** Per request: the verified caller, a fresh identity map and batched loaders. */
export interface Context extends BaseContext {
  em: EntityManager;
  /** The caller's agents by id, deleted ones included (for references); null when not theirs. */
  agentById: DataLoader<string, AgentRow | null>;
}
