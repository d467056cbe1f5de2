import { fetchEntity } from '../../lib/service-client.js';

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

export function serviceLookups(urls: ServiceUrls, caller: { proof: string; requestId: string }): Lookups {
  return {
    agent: (id) =>
      fetchEntity<AgentSnapshot>(urls.agentUrl, 'Agent', id, 'id provider model systemPrompt temperature maxTokens status deletedAt', caller),
    session: (id) => fetchEntity<SessionReference>(urls.memoryUrl, 'Session', id, 'id agent { id }', caller),
  };
}
