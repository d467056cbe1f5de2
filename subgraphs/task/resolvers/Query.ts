import type { QueryResolvers } from '../generated/resolvers-types.js';
import { requireScope } from '../../../lib/principal.js';
import { findTask, listTasks } from '../tasks.js';

export const Query: QueryResolvers = {
  task: (_parent, { id }, { principal, em }) => findTask(em, requireScope(principal, 'tasks:read'), id),
  tasks: (_parent, args, { principal, em }) => listTasks(em, requireScope(principal, 'tasks:read'), args),
};
