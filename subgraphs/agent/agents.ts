import { randomUUID } from 'node:crypto';
import type { EntityManager } from '@mikro-orm/postgresql';
import { badInput, notFound } from '../../lib/errors.js';
import { isUuid } from '../../lib/ids.js';
import { afterCursorFilter, pageSize, toConnection, type Connection } from '../../lib/pagination.js';
import { jsonWithin, numberIn, optionalText, text } from '../../lib/validate.js';
import { AgentEntity, type AgentRow, type AgentStatus } from './entities.js';

/** Providers a task can run on; the task service refuses the rest at runTask too. */
export const PROVIDERS = ['openai', 'anthropic', 'echo'] as const;

export interface AgentFields {
  name?: string | null;
  description?: string | null;
  provider?: string | null;
  model?: string | null;
  systemPrompt?: string | null;
  temperature?: number | null;
  maxTokens?: number | null;
  status?: AgentStatus | null;
  metadata?: unknown;
}

function required<T>(value: T | null | undefined, field: string): T {
  if (value === null) throw badInput(`"${field}" cannot be null.`, field);
  return value as T;
}

/** Checks and normalises the fields present in `input`; absent fields stay absent. */
function validate(input: AgentFields): Partial<AgentRow> {
  const out: Partial<AgentRow> = {};
  if (input.name !== undefined) out.name = text(required(input.name, 'name'), 'name', { min: 1, max: 200 });
  if (input.description !== undefined) out.description = optionalText(input.description, 'description', 2000);
  if (input.provider !== undefined) {
    const provider = required(input.provider, 'provider');
    if (!(PROVIDERS as readonly string[]).includes(provider)) {
      throw badInput(`"provider" must be one of ${PROVIDERS.join(', ')}.`, 'provider');
    }
    out.provider = provider;
  }
  if (input.model !== undefined) out.model = text(required(input.model, 'model'), 'model', { min: 1, max: 200 });
  if (input.systemPrompt !== undefined) out.systemPrompt = optionalText(input.systemPrompt, 'systemPrompt', 100_000);
  if (input.temperature !== undefined) {
    out.temperature = input.temperature === null ? null : numberIn(input.temperature, 'temperature', 0, 2);
  }
  if (input.maxTokens !== undefined) {
    out.maxTokens = input.maxTokens === null ? null : numberIn(input.maxTokens, 'maxTokens', 1, 200_000);
  }
  if (input.status !== undefined) out.status = required(input.status, 'status');
  if (input.metadata !== undefined) out.metadata = jsonWithin(input.metadata, 'metadata', 64 * 1024);
  return out;
}

export async function createAgent(em: EntityManager, ownerId: string, input: AgentFields): Promise<AgentRow> {
  const fields = validate(input);
  const now = new Date();
  const agent = em.create(AgentEntity, {
    id: randomUUID(),
    ownerId,
    name: fields.name!,
    description: fields.description ?? null,
    provider: fields.provider!,
    model: fields.model!,
    systemPrompt: fields.systemPrompt ?? null,
    temperature: fields.temperature ?? null,
    maxTokens: fields.maxTokens ?? null,
    status: 'ACTIVE',
    metadata: fields.metadata ?? null,
    createdAt: now,
    updatedAt: now,
    deletedAt: null,
  });
  await em.persistAndFlush(agent);
  return agent;
}

/** One live agent of the owner, or null (missing, deleted, or someone else's: the same answer). */
export async function findAgent(em: EntityManager, ownerId: string, id: string): Promise<AgentRow | null> {
  if (!isUuid(id)) return null;
  return em.findOne(AgentEntity, { id, ownerId, deletedAt: null });
}

export async function updateAgent(em: EntityManager, ownerId: string, id: string, input: AgentFields): Promise<AgentRow> {
  const fields = validate(input);
  const agent = await findAgent(em, ownerId, id);
  if (!agent) throw notFound('Agent');
  em.assign(agent, { ...fields, updatedAt: new Date() });
  await em.flush();
  return agent;
}

export async function deleteAgent(em: EntityManager, ownerId: string, id: string): Promise<boolean> {
  if (!isUuid(id)) return false;
  const now = new Date();
  const changed = await em.nativeUpdate(AgentEntity, { id, ownerId, deletedAt: null }, { deletedAt: now, updatedAt: now });
  return changed > 0;
}

export async function listAgents(
  em: EntityManager,
  ownerId: string,
  args: { first?: number | null; after?: string | null; status?: AgentStatus | null },
): Promise<Connection<AgentRow>> {
  const first = pageSize(args.first, 20);
  const where = { ownerId, deletedAt: null, ...(args.status ? { status: args.status } : {}) };
  const [rows, totalCount] = await Promise.all([
    em.find(AgentEntity, { ...where, ...afterCursorFilter(args.after) }, { orderBy: { createdAt: 'asc', id: 'asc' }, limit: first + 1 }),
    em.count(AgentEntity, where),
  ]);
  return toConnection(rows, first, totalCount);
}

/** Batch for references: the owner's agents among `ids`, deleted ones included, in `ids` order. */
export async function agentsByIds(em: EntityManager, ownerId: string | null, ids: readonly string[]): Promise<(AgentRow | null)[]> {
  const valid = ids.filter(isUuid);
  if (!ownerId || valid.length === 0) return ids.map(() => null);
  const rows = await em.find(AgentEntity, { id: { $in: valid }, ownerId });
  const byId = new Map(rows.map((row) => [row.id, row]));
  return ids.map((id) => byId.get(id) ?? null);
}
