import type { UserResolvers } from '../generated/resolvers-types.js';

export const User: UserResolvers = {
  // A public entry point: the loader only returns the caller's own user.
  __resolveReference: (reference, { userById }) => userById.load(reference.id),
};
