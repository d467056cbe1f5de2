import type { AgentResolvers } from '../generated/resolvers-types.js';
import type { AgentReference } from '../entities.js';
import { requireScope } from '../../../lib/principal.js';
import { listSessions } from '../sessions.js';

/** An Agent as this subgraph knows it: its key (codegen.ts maps Agent to AgentReference here). */
export const agentReference = (id: string): AgentReference => ({ __typename: 'Agent', id });

export const Agent: AgentResolvers = {
  // The agent service decides who sees an agent; here an agent is only a key to filter sessions by.
  __resolveReference: (reference) => agentReference(reference.id),
  // The owner filter makes another user's agent an empty connection.
  sessions: (agent, args, { principal, em }) =>
    listSessions(em, requireScope(principal, 'memory:read'), { agentId: agent.id, first: args.first, after: args.after }),
};
