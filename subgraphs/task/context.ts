import type { EntityManager } from '@mikro-orm/postgresql';
import type DataLoader from 'dataloader';
import type { BaseContext } from '../../lib/subgraph-server.js';
import type { TaskEventLog } from '../../lib/task-events/types.js';
import type { TaskRow } from './entities.js';
import type { Lookups } from './lookups.js';
import type { ProviderCheck } from './tasks.js';

/** Per request: the verified caller, a fresh identity map, batched loaders and the other services. */
export interface Context extends BaseContext {
  em: EntityManager;
  /** The caller's tasks by id (for references); null when not theirs. */
  taskById: DataLoader<string, TaskRow | null>;
  /** The caller's agents and sessions, read through the services that own them. */
  lookups: Lookups;
  /** Woken after a commit that wrote outbox rows, so they are published at once. */
  relay: { wake(): void };
  eventLog: TaskEventLog;
  /** Whether the workers can run an agent's provider (the same provider settings as theirs). */
  checkProvider: ProviderCheck;
}
