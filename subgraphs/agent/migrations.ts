import { Migration } from '@mikro-orm/migrations';
import type { MigrationObject } from '@mikro-orm/core';

class CreateAgents extends Migration {
  override async up(): Promise<void> {
    this.addSql(`
      create table "agent"."agents" (
        id uuid primary key,
        owner_id uuid not null,
        name text not null,
        description text,
        provider text not null,
        model text not null,
        system_prompt text,
        temperature double precision,
        max_tokens integer,
        status text not null check (status in ('ACTIVE', 'PAUSED', 'ARCHIVED')),
        metadata jsonb,
        created_at timestamptz not null,
        updated_at timestamptz not null,
        deleted_at timestamptz
      )`);
    // The listing: one owner's live agents in (created_at, id) order.
    this.addSql(`create index agents_owner_listing on "agent"."agents" (owner_id, created_at, id) where deleted_at is null`);
  }
}

/** Applied in order on start; never edit one that has shipped, add the next. */
export const migrations: MigrationObject[] = [{ name: '2026112701_create_agents', class: CreateAgents }];
