import { Migration } from '@mikro-orm/migrations';
import type { MigrationObject } from '@mikro-orm/core';

class CreateTasks extends Migration {
  override async up(): Promise<void> {
    this.addSql(`
      create table "task"."tasks" (
        id uuid primary key,
        owner_id uuid not null,
        agent_id uuid not null,
        session_id uuid,
        input text not null,
        status text not null check (status in ('QUEUED', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED')),
        provider text not null,
        model text not null,
        system_prompt text,
        temperature double precision,
        max_tokens integer,
        agent_settings jsonb not null default '{}'::jsonb,
        output text,
        error text,
        attempts integer not null default 0 check (attempts >= 0),
        prompt_tokens integer,
        completion_tokens integer,
        total_tokens integer,
        idempotency_key text,
        created_at timestamptz not null,
        started_at timestamptz,
        finished_at timestamptz,
        updated_at timestamptz not null
      )`);
    // The listings: one owner's tasks in (created_at, id) order, all of them or one agent's.
    this.addSql(`create index tasks_owner_listing on "task"."tasks" (owner_id, created_at, id)`);
    this.addSql(`create index tasks_owner_agent_listing on "task"."tasks" (owner_id, agent_id, created_at, id)`);
    // One task per key and owner, even when two runTask calls race (insert ... on conflict do nothing).
    this.addSql(`
      create unique index tasks_owner_idempotency_key on "task"."tasks" (owner_id, idempotency_key)
      where idempotency_key is not null`);

    this.addSql(`
      create table "task"."outbox" (
        id bigserial primary key,
        task_id uuid not null,
        topic text not null,
        payload jsonb not null,
        created_at timestamptz not null,
        published_at timestamptz
      )`);
    // The relay's scan: what is still to publish, in order.
    this.addSql(`create index outbox_unpublished on "task"."outbox" (id) where published_at is null`);
  }
}

class AddExecution extends Migration {
  override async up(): Promise<void> {
    // A running task is leased to one worker, which renews the lease while it works; a reaper
    // returns tasks whose lease expired (the worker died) to the queue.
    this.addSql(`alter table "task"."tasks" add column worker_id text, add column lease_expires_at timestamptz`);
    this.addSql(`create index tasks_running_leases on "task"."tasks" (lease_expires_at) where status = 'RUNNING'`);
    this.addSql(`create index tasks_queued_since on "task"."tasks" (updated_at) where status = 'QUEUED'`);
    // The events of finished tasks, kept after the live log (Redis) expires.
    this.addSql(`
      create table "task"."task_events" (
        task_id uuid not null,
        sequence integer not null,
        type text not null,
        attempt integer not null,
        delta text,
        at timestamptz not null,
        primary key (task_id, sequence)
      )`);
    this.addSql(`create index outbox_published on "task"."outbox" (published_at) where published_at is not null`);
  }
}

/** Applied in order on start; never edit one that has shipped, add the next. */
export const migrations: MigrationObject[] = [
  { name: '2026112801_create_tasks', class: CreateTasks },
  { name: '2026112802_add_execution', class: AddExecution },
];
