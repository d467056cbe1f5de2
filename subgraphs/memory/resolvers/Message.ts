import type { MessageResolvers } from '../generated/resolvers-types.js';

export const Message: MessageResolvers = {
  task: (message) => (message.taskId ? { __typename: 'Task', id: message.taskId } : null),
};
