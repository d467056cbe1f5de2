import type { MutationResolvers } from '../generated/resolvers-types.js';
import { requireScope } from '../../../lib/principal.js';
import { cancelTask, runTask } from '../tasks.js';

export const Mutation: MutationResolvers = {
  runTask: (_parent, { input }, { principal, em, lookups }) => runTask(em, requireScope(principal, 'tasks:write'), input, lookups),
  cancelTask: (_parent, { id }, { principal, em }) => cancelTask(em, requireScope(principal, 'tasks:write'), id),
};
