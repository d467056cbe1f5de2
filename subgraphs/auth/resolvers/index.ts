import type { Resolvers } from '../generated/resolvers-types.js';
import { DateTimeScalar } from '../../../lib/scalars.js';
import { Mutation } from './Mutation.js';
import { Query } from './Query.js';
import { User } from './User.js';

export const resolvers: Resolvers = { DateTime: DateTimeScalar, Query, Mutation, User };
