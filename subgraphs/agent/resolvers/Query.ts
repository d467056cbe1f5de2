import type { QueryResolvers } from '../generated/resolvers-types.js';
import { requireScope } from '../../../lib/principal.js';
import { findAgent, listAgents } from '../agents.js';

export const Query: QueryResolvers = {
  agent: (_parent, { id }, { principal, em }) => findAgent(em, requireScope(principal, 'agents:read'), id),
  agents: (_parent, args, { principal, em }) => listAgents(em, requireScope(principal, 'agents:read'), args),
};
