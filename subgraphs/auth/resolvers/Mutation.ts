import type { MutationResolvers } from '../generated/resolvers-types.js';
import { requireScope } from '../../../lib/principal.js';
import { createApiKey, revokeApiKey } from '../api-keys.js';
import { endSession, refreshSession, startSession } from '../sessions.js';
import { login, signUp } from '../users.js';

export const Mutation: MutationResolvers = {
  signUp: async (_parent, args, { em, sessions }) => startSession(em, sessions, await signUp(em, args)),
  login: async (_parent, args, { em, sessions }) => startSession(em, sessions, await login(em, args)),
  refreshToken: (_parent, { refreshToken }, { em, sessions, log }) => refreshSession(em, sessions, refreshToken, log),
  logout: (_parent, { refreshToken }, { em }) => endSession(em, refreshToken),
  createApiKey: (_parent, { name, scopes }, { principal, em }) =>
    createApiKey(em, principal, requireScope(principal, 'keys:write'), { name, scopes }),
  revokeApiKey: (_parent, { id }, { principal, em }) => revokeApiKey(em, requireScope(principal, 'keys:write'), id),
};
