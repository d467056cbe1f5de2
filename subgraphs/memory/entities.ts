import { EntitySchema } from '@mikro-orm/postgresql';

export type MessageRole = 'SYSTEM' | 'USER' | 'ASSISTANT' | 'TOOL';
export const MESSAGE_ROLES: readonly MessageRole[] = ['SYSTEM', 'USER', 'ASSISTANT', 'TOOL'];

/** A row of memory.sessions, and the object the Session resolvers receive. */
export interface SessionRow {
  id: string;
  ownerId: string;
  /** An agent of the agent service; checked through its API when the session is created. */
  agentId: string;
  title: string | null;
  createdAt: Date;
  /** Moves forward whenever a message is added, so clients can sort by recent activity. */
  updatedAt: Date;
}

/** A row of memory.messages, and the object the Message resolvers receive. */
export interface MessageRow {
  id: string;
  sessionId: string;
  ownerId: string;
  role: MessageRole;
  content: string;
  tokenCount: number | null;
  /** The task whose input or answer this is; at most one of each role per task and session. */
  taskId: string | null;
  createdAt: Date;
  /**
   * Order of the conversation: an identity column, taken while the session row is locked, so
   * it grows in commit order within a session even when two messages share a millisecond.
   */
  position: bigint;
}

export const SessionEntity = new EntitySchema<SessionRow>({
  name: 'SessionRow',
  tableName: 'sessions',
  properties: {
    id: { type: 'uuid', primary: true },
    ownerId: { type: 'uuid', fieldName: 'owner_id' },
    agentId: { type: 'uuid', fieldName: 'agent_id' },
    title: { type: 'text', nullable: true },
    createdAt: { type: 'Date', fieldName: 'created_at' },
    updatedAt: { type: 'Date', fieldName: 'updated_at' },
  },
});

/** Read through the ORM; written only with SQL in messages.ts (the position is the database's). */
export const MessageEntity = new EntitySchema<MessageRow>({
  name: 'MessageRow',
  tableName: 'messages',
  properties: {
    id: { type: 'uuid', primary: true },
    sessionId: { type: 'uuid', fieldName: 'session_id' },
    ownerId: { type: 'uuid', fieldName: 'owner_id' },
    role: { type: 'text' },
    content: { type: 'text' },
    tokenCount: { type: 'integer', fieldName: 'token_count', nullable: true },
    taskId: { type: 'uuid', fieldName: 'task_id', nullable: true },
    createdAt: { type: 'Date', fieldName: 'created_at' },
    position: { type: 'bigint' },
  },
});

export const entities = [SessionEntity, MessageEntity];

/** An agent as this service knows it: the key of an entity the agent service owns. */
export interface AgentReference {
  __typename?: 'Agent';
  id: string;
}
