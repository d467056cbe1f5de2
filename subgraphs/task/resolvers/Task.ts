import type { TaskResolvers } from '../generated/resolvers-types.js';
import { taskEvents } from '../events.js';

export const Task: TaskResolvers = {
  // A public entry point: the loader only returns the caller's own tasks.
  __resolveReference: (reference, { taskById }) => taskById.load(reference.id),
  // Only the key: the router asks the agent service for the rest.
  agent: (task) => ({ __typename: 'Agent', id: task.agentId }),
  session: (task) => (task.sessionId ? { __typename: 'Session', id: task.sessionId } : null),
  usage: (task) =>
    task.promptTokens === null || task.completionTokens === null || task.totalTokens === null
      ? null
      : { promptTokens: task.promptTokens, completionTokens: task.completionTokens, totalTokens: task.totalTokens },
  // Every path to a Task (query, list, reference) has checked its owner already.
  events: async (task, { afterSequence }, { em, eventLog }) =>
    (await taskEvents(em, eventLog, task, afterSequence ?? 0)).map((event) => ({ ...event, task })),
};
