import type { MutationResolvers } from '../generated/resolvers-types.js';
import { requireScope } from '../../../lib/principal.js';
import { createAgent, deleteAgent, updateAgent } from '../agents.js';

export const Mutation: MutationResolvers = {
  createAgent: (_parent, { input }, { principal, em }) => createAgent(em, requireScope(principal, 'agents:write'), input),
  updateAgent: (_parent, { id, input }, { principal, em }) => updateAgent(em, requireScope(principal, 'agents:write'), id, input),
  deleteAgent: (_parent, { id }, { principal, em }) => deleteAgent(em, requireScope(principal, 'agents:write'), id),
};
