import type { AgentResolvers } from '../generated/resolvers-types.js';

export const Agent: AgentResolvers = {
  // A public entry point: the loader only returns the caller's own agents.
  __resolveReference: (reference, { agentById }) => agentById.load(reference.id),
  owner: (agent) => ({ __typename: 'User', id: agent.ownerId }),
};
