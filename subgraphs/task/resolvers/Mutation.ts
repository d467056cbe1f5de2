import type { MutationResolvers } from '../generated/resolvers-types.js';
import { requireScope } from '../../../lib/principal.js';
import { cancelTask, runTask } from '../tasks.js';

export const Mutation: MutationResolvers = {
  runTask: async (_parent, { input }, { principal, em, lookups, relay, checkProvider }) => {
    const task = await runTask(em, requireScope(principal, 'tasks:write'), input, lookups, checkProvider);
    relay.wake();
    return task;
  },
  cancelTask: async (_parent, { id }, { principal, em, relay }) => {
    const task = await cancelTask(em, requireScope(principal, 'tasks:write'), id);
    relay.wake();
    return task;
  },
};
