import type { EntityManager } from '@mikro-orm/postgresql';
import type DataLoader from 'dataloader';
import type { BaseContext } from '../../lib/subgraph-server.js';
import type { UserRow } from './entities.js';
import type { SessionSettings } from './sessions.js';

/** Per request: the verified caller, a fresh identity map and batched loaders. */
export interface Context extends BaseContext {
  em: EntityManager;
  /** Users by id, for references; null for anyone but the caller. */
  userById: DataLoader<string, UserRow | null>;
  /** How tokens are signed and how long they live. */
  sessions: SessionSettings;
}
