import { createHash, createPrivateKey, randomBytes, randomUUID, type KeyObject } from 'node:crypto';
import jwt from 'jsonwebtoken';
import type { EntityManager } from '@mikro-orm/postgresql';
import { ConfigError } from '../../lib/config.js';
import { unauthenticated } from '../../lib/errors.js';
import { JWT_ALGORITHM } from '../../lib/jwt-keys.js';
import type { Logger } from '../../lib/logger.js';
import { RefreshTokenEntity, UserEntity, type RefreshTokenRow, type UserRow } from './entities.js';

/**
 * Logins: a short-lived RS256 access token plus a family of single-use refresh tokens. Each
 * refresh spends one token and adds its successor to the family; presenting a spent token again
 * means two parties hold it, so the whole family is revoked.
 */
export interface SessionSettings {
  /** RSA private key that signs access tokens. */
  privateKey: KeyObject;
  issuer: string;
  audience: string;
  accessTokenTtlSeconds: number;
  refreshTokenTtlSeconds: number;
}

/** Parses the signing key once; a ConfigError says what is wrong with it. */
export function rsaPrivateKey(pem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch {
    throw new ConfigError('JWT_PRIVATE_KEY does not parse as a PEM private key.');
  }
  if (key.asymmetricKeyType !== 'rsa') {
    throw new ConfigError(`JWT_PRIVATE_KEY must be an RSA key (access tokens are RS256), got ${key.asymmetricKeyType ?? 'another kind'}.`);
  }
  return key;
}

/** The AuthPayload GraphQL type. */
export interface AuthPayloadResult {
  accessToken: string;
  refreshToken: string;
  expiresIn: number;
  user: UserRow;
}

/** A JWT naming the user: `sub`, `iss`, `aud`, `iat`, `exp` and a unique `jti`. */
export function signAccessToken(settings: SessionSettings, userId: string): string {
  return jwt.sign({}, settings.privateKey, {
    algorithm: JWT_ALGORITHM,
    subject: userId,
    issuer: settings.issuer,
    audience: settings.audience,
    expiresIn: settings.accessTokenTtlSeconds,
    jwtid: randomUUID(),
  });
}

const REFRESH_TOKEN_BYTES = 32;
const REFRESH_TOKEN_SHAPE = /^[A-Za-z0-9_-]{43}$/;

/** 32 random bytes, base64url: nothing in it but entropy. */
export function newRefreshToken(): string {
  return randomBytes(REFRESH_TOKEN_BYTES).toString('base64url');
}

/**
 * Hex SHA-256 of a token or key secret. The input is 256 random bits, so a slow hash would add
 * nothing: no dictionary reaches it, and a fast one keeps every lookup cheap.
 */
export function sha256Hex(value: string): string {
  return createHash('sha256').update(value, 'utf8').digest('hex');
}

/** The stored hash of a presented refresh token, or null when it cannot be one we issued. */
export function refreshTokenHash(token: string): string | null {
  return REFRESH_TOKEN_SHAPE.test(token) ? sha256Hex(token) : null;
}

export type RefreshTokenState = 'live' | 'spent' | 'revoked' | 'expired';

/**
 * What presenting this token means. Revoked wins (its family is dead already); spent comes before
 * expired, so that a stolen token replayed late still takes its family down.
 */
export function refreshTokenState(row: Pick<RefreshTokenRow, 'usedAt' | 'revokedAt' | 'expiresAt'>, now: Date): RefreshTokenState {
  if (row.revokedAt) return 'revoked';
  if (row.usedAt) return 'spent';
  if (row.expiresAt.getTime() <= now.getTime()) return 'expired';
  return 'live';
}

const REFRESH_TOKENS = '"auth"."refresh_tokens"';

async function addRefreshToken(em: EntityManager, settings: SessionSettings, userId: string, familyId: string, now: Date): Promise<string> {
  const token = newRefreshToken();
  await em.insert(RefreshTokenEntity, {
    id: randomUUID(),
    familyId,
    userId,
    tokenHash: sha256Hex(token),
    createdAt: now,
    expiresAt: new Date(now.getTime() + settings.refreshTokenTtlSeconds * 1000),
    usedAt: null,
    revokedAt: null,
  });
  return token;
}

function payload(settings: SessionSettings, user: UserRow, refreshToken: string): AuthPayloadResult {
  return {
    accessToken: signAccessToken(settings, user.id),
    refreshToken,
    expiresIn: settings.accessTokenTtlSeconds,
    user,
  };
}

/** Tokens for a user who just proved who they are: a new refresh-token family. */
export async function startSession(em: EntityManager, settings: SessionSettings, user: UserRow): Promise<AuthPayloadResult> {
  const refreshToken = await addRefreshToken(em, settings, user.id, randomUUID(), new Date());
  return payload(settings, user, refreshToken);
}

const invalidRefreshToken = () => unauthenticated('Invalid or expired refresh token.');

/**
 * Spends a live refresh token for new tokens in the same family. The conditional UPDATE is the
 * whole decision: of two concurrent refreshes with one token, the second waits on the row lock,
 * finds it spent, and is handled as reuse.
 */
export async function refreshSession(em: EntityManager, settings: SessionSettings, token: string, log: Logger): Promise<AuthPayloadResult> {
  const tokenHash = refreshTokenHash(token);
  if (!tokenHash) throw invalidRefreshToken();
  const now = new Date();
  const rotated = await em.transactional(async (tx) => {
    const spent = await tx.execute<{ family_id: string; user_id: string }[]>(
      `update ${REFRESH_TOKENS} set used_at = ?
        where token_hash = ? and used_at is null and revoked_at is null and expires_at > ?
        returning family_id, user_id`,
      [now, tokenHash, now],
    );
    if (spent.length === 0) return null;
    const user = await tx.findOne(UserEntity, { id: spent[0].user_id });
    if (!user) return null;
    return { user, refreshToken: await addRefreshToken(tx, settings, user.id, spent[0].family_id, now) };
  });
  if (rotated) return payload(settings, rotated.user, rotated.refreshToken);

  // Not exchangeable; find out why, for reuse detection.
  const row = await em.findOne(RefreshTokenEntity, { tokenHash });
  if (row && refreshTokenState(row, now) === 'spent') {
    const revoked = await revokeFamily(em, row.familyId, now);
    log.warn({ familyId: row.familyId, revoked }, 'spent refresh token presented again; family revoked');
    throw unauthenticated('This refresh token was already used, so every token of its login has been revoked; log in again.');
  }
  throw invalidRefreshToken();
}

async function revokeFamily(em: EntityManager, familyId: string, now: Date): Promise<number> {
  const rows = await em.execute<{ id: string }[]>(
    `update ${REFRESH_TOKENS} set revoked_at = ? where family_id = ? and revoked_at is null returning id`,
    [now, familyId],
  );
  return rows.length;
}

/**
 * Logout: revokes the family of `token`. True when that revoked a token that could still be
 * exchanged; false for an unknown token or a family that was already dead.
 */
export async function endSession(em: EntityManager, token: string): Promise<boolean> {
  const tokenHash = refreshTokenHash(token);
  if (!tokenHash) return false;
  const now = new Date();
  const rows = await em.execute<{ was_live: boolean }[]>(
    `update ${REFRESH_TOKENS} t set revoked_at = ?
       from ${REFRESH_TOKENS} presented
      where presented.token_hash = ? and t.family_id = presented.family_id and t.revoked_at is null
      returning (t.used_at is null and t.expires_at > ?) as was_live`,
    [now, tokenHash, now],
  );
  return rows.some((row) => row.was_live);
}

/**
 * Deletes the families whose newest token has expired: nothing in them can be exchanged, and no
 * live token is left for reuse detection to protect. A family with a live token keeps its spent
 * ones, so a late replay still revokes it. Returns how many tokens went.
 */
export async function pruneExpiredRefreshTokens(em: EntityManager, maxFamilies = 10_000): Promise<number> {
  const rows = await em.execute<{ id: string }[]>(
    `delete from ${REFRESH_TOKENS} where family_id in (
       select family_id from ${REFRESH_TOKENS} group by family_id having max(expires_at) < ? limit ?
     ) returning id`,
    [new Date(), maxFamilies],
  );
  return rows.length;
}
