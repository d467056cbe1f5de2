import { randomBytes, randomUUID } from 'node:crypto';
import type { EntityManager } from '@mikro-orm/postgresql';
import { badInput, forbidden, notFound, unauthenticated } from '../../lib/errors.js';
import { isUuid } from '../../lib/ids.js';
import { DEFAULT_API_KEY_SCOPES, SCOPES, type Principal, type Scope } from '../../lib/principal.js';
import { text } from '../../lib/validate.js';
import { ApiKeyEntity, type ApiKeyRow } from './entities.js';
import { sha256Hex } from './sessions.js';

/** Live (not revoked) keys one user may hold. */
export const MAX_LIVE_KEYS_PER_USER = 100;

/**
 * `ak_<8 hex>_<43 base64url>`: the first part is a public label (the prefix shown in lists), the
 * second 256 random bits. Only the SHA-256 of the whole secret is stored; with that much entropy a
 * fast hash is right, and it keeps the router's per-request lookup cheap.
 */
const SECRET_SHAPE = /^ak_[0-9a-f]{8}_[A-Za-z0-9_-]{43}$/;
export const PREFIX_LENGTH = 'ak_'.length + 8;

export function newApiKeySecret(): { secret: string; prefix: string; secretHash: string } {
  const prefix = `ak_${randomBytes(4).toString('hex')}`;
  const secret = `${prefix}_${randomBytes(32).toString('base64url')}`;
  return { secret, prefix, secretHash: sha256Hex(secret) };
}

/** The stored hash for a presented secret, or null when it cannot be a key we issued. */
export function apiKeySecretHash(secret: string): string | null {
  return SECRET_SHAPE.test(secret) ? sha256Hex(secret) : null;
}

/**
 * The scopes a new key gets: omitted means the defaults; duplicates go; an unknown name is refused
 * by name. An API key can only pass on scopes it holds, so a leaked key cannot mint a stronger one.
 */
export function resolveScopes(requested: readonly string[] | null | undefined, principal: Principal): Scope[] {
  const held = principal.kind === 'api_key' ? new Set<string>(principal.scopes) : null;
  if (requested === null || requested === undefined) {
    return held ? DEFAULT_API_KEY_SCOPES.filter((scope) => held.has(scope)) : [...DEFAULT_API_KEY_SCOPES];
  }
  const unknown = requested.find((scope) => !(SCOPES as readonly string[]).includes(scope));
  if (unknown !== undefined) {
    throw badInput(`Unknown scope "${unknown}"; scopes are ${SCOPES.join(', ')}.`, 'scopes');
  }
  if (requested.length === 0) throw badInput('"scopes" must name at least one scope, or be left out for the defaults.', 'scopes');
  const notHeld = held && requested.find((scope) => !held.has(scope));
  if (notHeld) throw forbidden(`An API key cannot grant the "${notHeld}" scope, which it does not hold.`);
  // Canonical order, each once.
  return SCOPES.filter((scope) => requested.includes(scope));
}

const API_KEYS = '"auth"."api_keys"';

/** Creates a key for `userId`; the secret is returned this once. */
export async function createApiKey(
  em: EntityManager,
  principal: Principal,
  userId: string,
  input: { name: string; scopes?: readonly string[] | null },
): Promise<{ apiKey: ApiKeyRow; secret: string }> {
  const name = text(input.name, 'name', { min: 1, max: 200 });
  const scopes = resolveScopes(input.scopes, principal);
  const { secret, prefix, secretHash } = newApiKeySecret();
  const apiKey = await em.transactional(async (tx) => {
    // Locking the user row serialises one user's key creations, so the limit cannot be raced past.
    const [user] = await tx.execute<{ id: string }[]>(`select id from "auth"."users" where id = ? for update`, [userId]);
    if (!user) throw unauthenticated('The account of this token no longer exists.');
    const live = await tx.count(ApiKeyEntity, { userId, revokedAt: null });
    if (live >= MAX_LIVE_KEYS_PER_USER) {
      throw badInput(`An account can have at most ${MAX_LIVE_KEYS_PER_USER} API keys; revoke one first.`);
    }
    const row = tx.create(ApiKeyEntity, {
      id: randomUUID(),
      userId,
      name,
      prefix,
      secretHash,
      scopes,
      createdAt: new Date(),
      lastUsedAt: null,
      revokedAt: null,
    });
    tx.persist(row);
    return row;
  });
  return { apiKey, secret };
}

/** The user's keys, newest first, revoked ones included. */
export function listApiKeys(em: EntityManager, userId: string): Promise<ApiKeyRow[]> {
  return em.find(ApiKeyEntity, { userId }, { orderBy: { createdAt: 'desc', id: 'desc' } });
}

/** Revokes one of the user's keys (once; later calls change nothing). NOT_FOUND for anyone else's. */
export async function revokeApiKey(em: EntityManager, userId: string, id: string): Promise<ApiKeyRow> {
  if (!isUuid(id)) throw notFound('API key');
  await em.nativeUpdate(ApiKeyEntity, { id, userId, revokedAt: null }, { revokedAt: new Date() });
  const key = await em.findOne(ApiKeyEntity, { id, userId });
  if (!key) throw notFound('API key');
  return key;
}

/** What the router needs to act for a key. */
export interface VerifiedApiKey {
  userId: string;
  apiKeyId: string;
  scopes: Scope[];
}

/** How stale `lastUsedAt` may get: bounds the writes a busy key causes to one a minute. */
export const LAST_USED_RESOLUTION_MS = 60_000;

/**
 * The live key with this secret, or null (malformed, unknown, revoked). Records the use at most
 * once a minute per key without holding up the answer: `recordUse` is started, not awaited.
 */
export async function verifyApiKey(
  em: EntityManager,
  secret: string,
  recordUse: (write: Promise<unknown>) => void,
): Promise<VerifiedApiKey | null> {
  const secretHash = apiKeySecretHash(secret);
  if (!secretHash) return null;
  const key = await em.findOne(ApiKeyEntity, { secretHash, revokedAt: null });
  if (!key) return null;
  const now = Date.now();
  if (!key.lastUsedAt || now - key.lastUsedAt.getTime() >= LAST_USED_RESOLUTION_MS) {
    // Conditional, so that many replicas seeing the same key write once between them.
    recordUse(
      em.execute(
        `update ${API_KEYS} set last_used_at = ?
          where id = ? and (last_used_at is null or last_used_at <= ?)`,
        [new Date(now), key.id, new Date(now - LAST_USED_RESOLUTION_MS)],
        'run',
      ),
    );
  }
  return {
    userId: key.userId,
    apiKeyId: key.id,
    scopes: key.scopes.filter((scope): scope is Scope => (SCOPES as readonly string[]).includes(scope)),
  };
}
