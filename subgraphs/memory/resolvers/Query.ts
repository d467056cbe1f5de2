import type { QueryResolvers } from '../generated/resolvers-types.js';
import { requireScope } from '../../../lib/principal.js';
import { findSession, listSessions } from '../sessions.js';

export const Query: QueryResolvers = {
  session: (_parent, { id }, { principal, em }) => findSession(em, requireScope(principal, 'memory:read'), id),
  sessions: (_parent, args, { principal, em }) => listSessions(em, requireScope(principal, 'memory:read'), args),
};
