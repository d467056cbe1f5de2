import { fetchEntity } from '../../lib/service-client.js';

/**
 * Whether the caller may see the agent, asked of the agent service through its own API with the
 * caller's router proof: its reference resolver answers null for agents the caller does not own,
 * and shows deleted ones (for history) with deletedAt set, which count as gone here.
 */
export async function agentVisibleToCaller(agentUrl: string, agentId: string, caller: { proof: string; requestId: string }): Promise<boolean> {
  const agent = await fetchEntity<{ id: string; deletedAt: string | null }>(agentUrl, 'Agent', agentId, 'id deletedAt', caller);
  return agent !== null && agent.deletedAt === null;
}
