import type { Resolvers } from '../generated/resolvers-types.js';
import { DateTimeScalar, JSONScalar } from '../../../lib/scalars.js';
import { Agent } from './Agent.js';
import { Mutation } from './Mutation.js';
import { Query } from './Query.js';
import { Task } from './Task.js';

export const resolvers: Resolvers = { DateTime: DateTimeScalar, JSON: JSONScalar, Query, Mutation, Task, Agent };
