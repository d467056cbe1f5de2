import type { QueryResolvers } from '../generated/resolvers-types.js';
import { ownerOf, requireScope } from '../../../lib/principal.js';
import { listApiKeys } from '../api-keys.js';

export const Query: QueryResolvers = {
  me: (_parent, _args, { principal, userById }) => {
    const userId = ownerOf(principal);
    return userId ? userById.load(userId) : null;
  },
  apiKeys: (_parent, _args, { principal, em }) => listApiKeys(em, requireScope(principal, 'keys:read')),
};
