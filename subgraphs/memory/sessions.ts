import { randomUUID } from 'node:crypto';
import type { EntityManager } from '@mikro-orm/postgresql';
import { notFound } from '../../lib/errors.js';
import { isUuid } from '../../lib/ids.js';
import { afterCursorFilter, pageSize, toConnection, type Connection } from '../../lib/pagination.js';
import { optionalText } from '../../lib/validate.js';
import { SessionEntity, type SessionRow } from './entities.js';

export interface NewSession {
  agentId: string;
  title?: string | null;
}

/**
 * Opens a session with one of the owner's agents. `agentVisible` asks the agent service (which
 * owns agents) whether the caller may see that agent; this service never reads its tables.
 */
export async function createSession(
  em: EntityManager,
  ownerId: string,
  input: NewSession,
  agentVisible: (agentId: string) => Promise<boolean>,
): Promise<SessionRow> {
  const title = optionalText(input.title, 'title', 200);
  // Validate before the network call; an id that is not a UUID names no agent.
  if (!isUuid(input.agentId) || !(await agentVisible(input.agentId))) throw notFound('Agent');
  const now = new Date();
  const session = em.create(SessionEntity, {
    id: randomUUID(),
    ownerId,
    agentId: input.agentId.toLowerCase(),
    title,
    createdAt: now,
    updatedAt: now,
  });
  await em.persistAndFlush(session);
  return session;
}

/** One session of the owner, or null (missing or someone else's: the same answer). */
export async function findSession(em: EntityManager, ownerId: string, id: string): Promise<SessionRow | null> {
  if (!isUuid(id)) return null;
  return em.findOne(SessionEntity, { id, ownerId });
}

/** Deletes one of the owner's sessions; its messages go with it (foreign key cascade). */
export async function deleteSession(em: EntityManager, ownerId: string, id: string): Promise<boolean> {
  if (!isUuid(id)) return false;
  return (await em.nativeDelete(SessionEntity, { id, ownerId })) > 0;
}

/** The owner's sessions, oldest first, optionally of one agent. */
export async function listSessions(
  em: EntityManager,
  ownerId: string,
  args: { agentId?: string | null; first?: number | null; after?: string | null },
): Promise<Connection<SessionRow>> {
  const first = pageSize(args.first, 20);
  const after = afterCursorFilter(args.after);
  const agentId = args.agentId ?? null;
  if (agentId !== null && !isUuid(agentId)) return toConnection([], first, 0);
  const where = { ownerId, ...(agentId ? { agentId } : {}) };
  const [rows, totalCount] = await Promise.all([
    em.find(SessionEntity, { ...where, ...after }, { orderBy: { createdAt: 'asc', id: 'asc' }, limit: first + 1 }),
    em.count(SessionEntity, where),
  ]);
  return toConnection(rows, first, totalCount);
}

/** Batch for references: the owner's sessions among `ids`, in `ids` order; all null without an owner. */
export async function sessionsByIds(em: EntityManager, ownerId: string | null, ids: readonly string[]): Promise<(SessionRow | null)[]> {
  const valid = ids.filter(isUuid);
  if (!ownerId || valid.length === 0) return ids.map(() => null);
  const rows = await em.find(SessionEntity, { id: { $in: valid }, ownerId });
  const byId = new Map(rows.map((row) => [row.id, row]));
  return ids.map((id) => byId.get(id.toLowerCase()) ?? null);
}
