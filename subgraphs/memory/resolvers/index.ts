import type { Resolvers } from '../generated/resolvers-types.js';
import { DateTimeScalar, JSONScalar } from '../../../lib/scalars.js';
import { Agent } from './Agent.js';
import { Message } from './Message.js';
import { Mutation } from './Mutation.js';
import { Query } from './Query.js';
import { Session } from './Session.js';

export const resolvers: Resolvers = { DateTime: DateTimeScalar, JSON: JSONScalar, Query, Mutation, Agent, Session, Message };
