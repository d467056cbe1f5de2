import { EntitySchema } from '@mikro-orm/postgresql';

export type AgentStatus = 'ACTIVE' | 'PAUSED' | 'ARCHIVED';

/** A row of agent.agents, and the object the Agent resolvers receive. */
export interface AgentRow {
  id: string;
  ownerId: string;
  name: string;
  description: string | null;
  provider: string;
  model: string;
  systemPrompt: string | null;
  temperature: number | null;
  maxTokens: number | null;
  status: AgentStatus;
  metadata: unknown;
  createdAt: Date;
  updatedAt: Date;
  /** Soft delete: gone from queries, still resolvable by reference so history keeps its agent. */
  deletedAt: Date | null;
}

export const AgentEntity = new EntitySchema<AgentRow>({
  name: 'AgentRow',
  tableName: 'agents',
  properties: {
    id: { type: 'uuid', primary: true },
    ownerId: { type: 'uuid', fieldName: 'owner_id' },
    name: { type: 'text' },
    description: { type: 'text', nullable: true },
    provider: { type: 'text' },
    model: { type: 'text' },
    systemPrompt: { type: 'text', fieldName: 'system_prompt', nullable: true },
    temperature: { type: 'double', nullable: true },
    maxTokens: { type: 'integer', fieldName: 'max_tokens', nullable: true },
    status: { type: 'text' },
    metadata: { type: 'json', nullable: true },
    createdAt: { type: 'Date', fieldName: 'created_at' },
    updatedAt: { type: 'Date', fieldName: 'updated_at' },
    deletedAt: { type: 'Date', fieldName: 'deleted_at', nullable: true },
  },
});

export const entities = [AgentEntity];
