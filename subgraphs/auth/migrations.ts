import { Migration } from '@mikro-orm/migrations';
import type { MigrationObject } from '@mikro-orm/core';

class CreateUsers extends Migration {
  override async up(): Promise<void> {
    this.addSql(`
      create table "auth"."users" (
        id uuid primary key,
        email text not null check (email = lower(email) and length(email) <= 254),
        name text,
        password_hash text not null,
        created_at timestamptz not null,
        updated_at timestamptz not null
      )`);
    // Login looks users up by email; uniqueness is what makes signUp's CONFLICT race-free.
    this.addSql(`create unique index users_email on "auth"."users" (email)`);
  }
}

class CreateApiKeys extends Migration {
  override async up(): Promise<void> {
    this.addSql(`
      create table "auth"."api_keys" (
        id uuid primary key,
        user_id uuid not null references "auth"."users" (id) on delete cascade,
        name text not null,
        prefix text not null,
        secret_hash text not null,
        scopes text[] not null,
        created_at timestamptz not null,
        last_used_at timestamptz,
        revoked_at timestamptz
      )`);
    // The router verifies keys by the hash of the presented secret.
    this.addSql(`create unique index api_keys_secret_hash on "auth"."api_keys" (secret_hash)`);
    // The listing: one user's keys, newest first.
    this.addSql(`create index api_keys_user_listing on "auth"."api_keys" (user_id, created_at desc, id desc)`);
  }
}

class CreateRefreshTokens extends Migration {
  override async up(): Promise<void> {
    this.addSql(`
      create table "auth"."refresh_tokens" (
        id uuid primary key,
        family_id uuid not null,
        user_id uuid not null references "auth"."users" (id) on delete cascade,
        token_hash text not null,
        created_at timestamptz not null,
        expires_at timestamptz not null,
        used_at timestamptz,
        revoked_at timestamptz
      )`);
    this.addSql(`create unique index refresh_tokens_token_hash on "auth"."refresh_tokens" (token_hash)`);
    // Revoking a family (logout, reuse detection) touches all of its tokens.
    this.addSql(`create index refresh_tokens_family on "auth"."refresh_tokens" (family_id)`);
    // For pruning expired tokens.
    this.addSql(`create index refresh_tokens_expires_at on "auth"."refresh_tokens" (expires_at)`);
  }
}

/** Applied in order on start; never edit one that has shipped, add the next. */
export const migrations: MigrationObject[] = [
  { name: '2026112801_create_users', class: CreateUsers },
  { name: '2026112802_create_api_keys', class: CreateApiKeys },
  { name: '2026112803_create_refresh_tokens', class: CreateRefreshTokens },
];
