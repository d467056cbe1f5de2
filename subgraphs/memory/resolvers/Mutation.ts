import type { MutationResolvers } from '../generated/resolvers-types.js';
import { requireScope } from '../../../lib/principal.js';
import { agentVisibleToCaller } from '../agent-client.js';
import { appendMessage } from '../messages.js';
import { createSession, deleteSession } from '../sessions.js';

export const Mutation: MutationResolvers = {
  createSession: (_parent, { agentId, title }, context) =>
    createSession(context.em, requireScope(context.principal, 'memory:write'), { agentId, title }, (id) =>
      agentVisibleToCaller(context.agentUrl, id, context),
    ),
  appendMessage: (_parent, { sessionId, role, content }, { principal, em }) =>
    appendMessage(em, requireScope(principal, 'memory:write'), { sessionId, role, content }),
  deleteSession: (_parent, { id }, { principal, em }) => deleteSession(em, requireScope(principal, 'memory:write'), id),
};
