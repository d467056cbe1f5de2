import type { Principal } from '../../lib/principal.js';
import { fetchEntities } from '../../lib/service-client.js';
import { Batcher } from './execution/batcher.js';

/** An agent as the agent service shows it to the caller: what a task copies from it. */
export interface AgentSnapshot {
  id: string;
  provider: string;
  model: string;
  systemPrompt: string | null;
  temperature: number | null;
  maxTokens: number | null;
  status: 'ACTIVE' | 'PAUSED' | 'ARCHIVED';
  /** Set when the agent was deleted: it still resolves for history, but takes no new tasks. */
  deletedAt: string | null;
}

/** A session as the memory service shows it to the caller. */
export interface SessionReference {
  id: string;
  agent: { id: string };
}

/**
 * What the task service reads from other services, on behalf of the caller: each owner's
 * `__resolveReference` answers null for what the caller may not see, which we treat as absent.
 */
export interface Lookups {
  agent: (id: string) => Promise<AgentSnapshot | null>;
  session: (id: string) => Promise<SessionReference | null>;
}

export interface ServiceUrls {
  /** Base URL (no /graphql) of the agent subgraph. */
  agentUrl: string;
  /** Base URL (no /graphql) of the memory subgraph. */
  memoryUrl: string;
}

const AGENT_SELECTION = 'id provider model systemPrompt temperature maxTokens status deletedAt';
const SESSION_SELECTION = 'id agent { id }';

/** The caller a lookup runs as: the router's proof for this request, and who it names. */
export interface LookupCaller {
  principal: Principal;
  proof: string;
  requestId: string;
}

interface LookupRequest {
  /** Lookups of the same principal may share one request to the owner. */
  principalKey: string;
  caller: LookupCaller;
  id: string;
}

/**
 * One `_entities` request per principal for the lookups that arrive in one event-loop turn (or
 * while earlier ones are in flight): a burst of runTask calls from one caller costs the owner one
 * request instead of one each. Only lookups of the very same principal (same user, key and scopes)
 * are merged, each made after its own request arrived, so nobody sees more or older data than a
 * lookup of their own would show.
 */
/** One lookup's answer: the entity (null when not visible), or why the owner could not say. */
type LookupResult<T> = { entity: T | null } | { error: unknown };

function entityBatcher<T>(url: string, typename: string, selection: string): Batcher<LookupRequest, LookupResult<T>> {
  return new Batcher<LookupRequest, LookupResult<T>>(
    async (requests) => {
      const byPrincipal = new Map<string, LookupRequest[]>();
      for (const request of requests) {
        const group = byPrincipal.get(request.principalKey);
        if (group) group.push(request);
        else byPrincipal.set(request.principalKey, [request]);
      }
      const results = new Map<LookupRequest, LookupResult<T>>();
      await Promise.all(
        [...byPrincipal.values()].map(async (group) => {
          const ids = [...new Set(group.map((r) => r.id))];
          try {
            const entities = await fetchEntities<T>(url, typename, ids, selection, group[0].caller);
            for (const request of group) results.set(request, { entity: entities[ids.indexOf(request.id)] });
          } catch (error) {
            // One caller's failure is theirs alone.
            for (const request of group) results.set(request, { error });
          }
        }),
      );
      return requests.map((request) => results.get(request)!);
    },
    { maxInFlight: 4, maxBatch: 200 },
  );
}

const batchers = new Map<string, Batcher<LookupRequest, LookupResult<unknown>>>();

async function lookUp<T>(url: string, typename: string, selection: string, request: LookupRequest): Promise<T | null> {
  const key = `${typename} ${url}`;
  let batcher = batchers.get(key);
  if (!batcher) batchers.set(key, (batcher = entityBatcher<unknown>(url, typename, selection)));
  const result = (await batcher.add(request)) as LookupResult<T>;
  if ('error' in result) throw result.error;
  return result.entity;
}

export function serviceLookups(urls: ServiceUrls, caller: LookupCaller): Lookups {
  // Made per request (most never look anything up): the key only when needed.
  let principalKey: string | undefined;
  const request = (id: string): LookupRequest => ({ principalKey: (principalKey ??= JSON.stringify(caller.principal)), caller, id });
  return {
    agent: (id) => lookUp<AgentSnapshot>(urls.agentUrl, 'Agent', AGENT_SELECTION, request(id)),
    session: (id) => lookUp<SessionReference>(urls.memoryUrl, 'Session', SESSION_SELECTION, request(id)),
  };
}
