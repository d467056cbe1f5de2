import type { SessionResolvers } from '../generated/resolvers-types.js';
import { contextMessages, listMessages } from '../messages.js';
import { agentReference } from './Agent.js';

export const Session: SessionResolvers = {
  // A public entry point: the loader only returns the caller's own sessions.
  __resolveReference: (reference, { sessionById }) => sessionById.load(reference.id),
  agent: (session) => agentReference(session.agentId),
  // Every path to a Session (query, list, reference, mutation) has checked its owner already.
  messages: (session, args, { em }) => listMessages(em, session, args),
  contextMessages: (session, { maxTokens, excludeTaskId }, { em }) => contextMessages(em, session, maxTokens, excludeTaskId),
};
