import type { AgentResolvers } from '../generated/resolvers-types.js';
import { requireScope } from '../../../lib/principal.js';
import { listTasks } from '../tasks.js';

export const Agent: AgentResolvers = {
  // The agent service decides who sees an agent; here an agent is only a key to list tasks by.
  __resolveReference: (reference) => ({ __typename: 'Agent', id: reference.id }),
  tasks: (agent, args, { principal, em }) => listTasks(em, requireScope(principal, 'tasks:read'), { ...args, agentId: agent.id }),
};
