import { EntitySchema } from '@mikro-orm/postgresql';

/** A row of auth.users, and the object the User resolvers receive (the hash never leaves this service). */
export interface UserRow {
  id: string;
  /** Trimmed and lower-cased; unique. */
  email: string;
  name: string | null;
  /** `scrypt$N$r$p$salt$hash` (see passwords.ts). Not in the GraphQL schema. */
  passwordHash: string;
  createdAt: Date;
  updatedAt: Date;
}

export const UserEntity = new EntitySchema<UserRow>({
  name: 'UserRow',
  tableName: 'users',
  properties: {
    id: { type: 'uuid', primary: true },
    email: { type: 'text' },
    name: { type: 'text', nullable: true },
    passwordHash: { type: 'text', fieldName: 'password_hash' },
    createdAt: { type: 'Date', fieldName: 'created_at' },
    updatedAt: { type: 'Date', fieldName: 'updated_at' },
  },
});

/** A row of auth.api_keys, and the object the ApiKey resolvers receive. */
export interface ApiKeyRow {
  id: string;
  userId: string;
  name: string;
  /** The first characters of the secret, e.g. "ak_1a2b3c4d". */
  prefix: string;
  /** Hex SHA-256 of the whole secret. Not in the GraphQL schema. */
  secretHash: string;
  scopes: string[];
  createdAt: Date;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
}

export const ApiKeyEntity = new EntitySchema<ApiKeyRow>({
  name: 'ApiKeyRow',
  tableName: 'api_keys',
  properties: {
    id: { type: 'uuid', primary: true },
    userId: { type: 'uuid', fieldName: 'user_id' },
    name: { type: 'text' },
    prefix: { type: 'text' },
    secretHash: { type: 'text', fieldName: 'secret_hash' },
    scopes: { type: 'string[]', columnType: 'text[]' },
    createdAt: { type: 'Date', fieldName: 'created_at' },
    lastUsedAt: { type: 'Date', fieldName: 'last_used_at', nullable: true },
    revokedAt: { type: 'Date', fieldName: 'revoked_at', nullable: true },
  },
});

/**
 * A row of auth.refresh_tokens. Every login starts a family; each refresh spends one token and adds
 * the next to the same family, so reuse of a spent token can revoke all of them at once.
 */
export interface RefreshTokenRow {
  id: string;
  familyId: string;
  userId: string;
  /** Hex SHA-256 of the opaque token. */
  tokenHash: string;
  createdAt: Date;
  expiresAt: Date;
  /** Set when the token was exchanged for the next one. */
  usedAt: Date | null;
  /** Set on logout or when reuse was detected in its family. */
  revokedAt: Date | null;
}

export const RefreshTokenEntity = new EntitySchema<RefreshTokenRow>({
  name: 'RefreshTokenRow',
  tableName: 'refresh_tokens',
  properties: {
    id: { type: 'uuid', primary: true },
    familyId: { type: 'uuid', fieldName: 'family_id' },
    userId: { type: 'uuid', fieldName: 'user_id' },
    tokenHash: { type: 'text', fieldName: 'token_hash' },
    createdAt: { type: 'Date', fieldName: 'created_at' },
    expiresAt: { type: 'Date', fieldName: 'expires_at' },
    usedAt: { type: 'Date', fieldName: 'used_at', nullable: true },
    revokedAt: { type: 'Date', fieldName: 'revoked_at', nullable: true },
  },
});

export const entities = [UserEntity, ApiKeyEntity, RefreshTokenEntity];
