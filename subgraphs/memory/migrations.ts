import { Migration } from '@mikro-orm/migrations';
import type { MigrationObject } from '@mikro-orm/core';

class CreateSessionsAndMessages extends Migration {
  override async up(): Promise<void> {
    this.addSql(`
      create table "memory"."sessions" (
        id uuid primary key,
        owner_id uuid not null,
        agent_id uuid not null,
        title text,
        created_at timestamptz not null,
        updated_at timestamptz not null
      )`);
    // The listings: one owner's sessions in (created_at, id) order, all or of one agent.
    this.addSql(`create index sessions_owner_listing on "memory"."sessions" (owner_id, created_at, id)`);
    this.addSql(`create index sessions_owner_agent_listing on "memory"."sessions" (owner_id, agent_id, created_at, id)`);

    this.addSql(`
      create table "memory"."messages" (
        id uuid primary key,
        session_id uuid not null references "memory"."sessions" (id) on delete cascade,
        owner_id uuid not null,
        role text not null check (role in ('SYSTEM', 'USER', 'ASSISTANT', 'TOOL')),
        content text not null,
        token_count integer,
        task_id uuid,
        created_at timestamptz not null,
        position bigint generated always as identity
      )`);
    // The conversation in order (pages keyset on position); also serves the cascade on delete.
    this.addSql(`create unique index messages_session_position on "memory"."messages" (session_id, position)`);
    // A task's input and answer land in its session once, however often its event is delivered.
    this.addSql(`create unique index messages_task_once on "memory"."messages" (session_id, task_id, role) where task_id is not null`);
  }
}

/** Applied in order on start; never edit one that has shipped, add the next. */
export const migrations: MigrationObject[] = [{ name: '2026112703_create_sessions_and_messages', class: CreateSessionsAndMessages }];
