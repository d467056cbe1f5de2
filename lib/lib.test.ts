import { describe, expect, it } from 'vitest';
import { ConfigError, envBool, envInt, envSecret, envUrl, readCommonConfig, subgraphBaseUrl } from './config.js';
import { decodeCursor, encodeCursor, pageSize, toConnection } from './pagination.js';
import { ProofCache, requireScope, signPrincipalProof, verifyPrincipalProof } from './principal.js';
import jwt from 'jsonwebtoken';
import { GraphQLError } from 'graphql';
import { pino } from 'pino';
import { maskError } from './errors.js';

const secret = 's'.repeat(40);

describe('configuration', () => {
  it('reads typed values with defaults', () => {
    expect(envInt({ N: '5' }, 'N', 1)).toBe(5);
    expect(envInt({}, 'N', 1)).toBe(1);
    expect(envBool({ B: 'off' }, 'B', true)).toBe(false);
    expect(subgraphBaseUrl({}, 'auth')).toBe('http://127.0.0.1:8004');
    expect(subgraphBaseUrl({ AUTH_URL: 'http://auth:9000/graphql' }, 'auth')).toBe('http://auth:9000');
  });

  it('stops on a bad value with one sentence naming the variable', () => {
    expect(() => envInt({ PORT: 'eighty' }, 'PORT', 1, { min: 0, max: 65535 })).toThrow(/^PORT must be an integer between 0 and 65535/);
    expect(() => envBool({ B: 'maybe' }, 'B', true)).toThrow(ConfigError);
    expect(() => envUrl({ REDIS_URL: 'http://x' }, 'REDIS_URL', ['redis:'])).toThrow(/REDIS_URL must use redis:/);
    expect(() => envSecret({ S: 'short' }, 'S')).toThrow(/at least 32 characters/);
    expect(() => readCommonConfig({ INTERNAL_SECRET: secret, LOG_LEVEL: 'loud' })).toThrow(/LOG_LEVEL must be one of/);
    expect(() => readCommonConfig({})).toThrow(/INTERNAL_SECRET must be set/);
  });
});

describe('pagination cursors', () => {
  it('round-trips and refuses garbage with BAD_USER_INPUT', () => {
    const key = { createdAt: new Date('2026-01-02T03:04:05.678Z'), id: '0d5f4c1e-8f0a-4a8e-9d6b-3f1c2b7a9e01' };
    expect(decodeCursor(encodeCursor(key))).toEqual(key);
    for (const bad of ['', 'abc', Buffer.from('2026-01-01T00:00:00Z|x').toString('base64url')]) {
      expect(() => decodeCursor(bad)).toThrow(expect.objectContaining({ extensions: expect.objectContaining({ code: 'BAD_USER_INPUT' }) }));
    }
  });

  it('validates the page size and derives hasNextPage from one extra row', () => {
    expect(pageSize(undefined, 20)).toBe(20);
    expect(() => pageSize(0, 20)).toThrow();
    expect(() => pageSize(101, 20)).toThrow();
    const rows = [1, 2, 3].map((i) => ({ createdAt: new Date(i), id: `0000000${i}-0000-4000-8000-000000000000` }));
    const page = toConnection(rows, 2, 3);
    expect(page.edges).toHaveLength(2);
    expect(page.pageInfo.hasNextPage).toBe(true);
    expect(toConnection(rows.slice(0, 2), 2, 2).pageInfo).toEqual({ hasNextPage: false, endCursor: page.pageInfo.endCursor });
  });
});

describe('router proof', () => {
  it('round-trips each kind of principal', () => {
    const user = { kind: 'user', userId: 'u1', scopes: ['agents:read'] } as const;
    expect(verifyPrincipalProof(signPrincipalProof({ ...user, scopes: [...user.scopes] }, secret, 'r1'), secret)).toEqual({ principal: user, requestId: 'r1' });
    const key = verifyPrincipalProof(signPrincipalProof({ kind: 'api_key', userId: 'u1', apiKeyId: 'k1', scopes: [] }, secret), secret);
    expect(key.principal).toMatchObject({ kind: 'api_key', apiKeyId: 'k1' });
    expect(verifyPrincipalProof(signPrincipalProof({ kind: 'anonymous', scopes: [] }, secret), secret).principal.kind).toBe('anonymous');
  });

  it('refuses a missing, forged, unsigned or expired proof', () => {
    const code = (fn: () => unknown) => {
      try {
        fn();
      } catch (error) {
        return (error as { extensions?: { code?: string } }).extensions?.code;
      }
      return 'accepted';
    };
    expect(code(() => verifyPrincipalProof(undefined, secret))).toBe('UNAUTHENTICATED');
    expect(code(() => verifyPrincipalProof(signPrincipalProof({ kind: 'anonymous', scopes: [] }, 'x'.repeat(40)), secret))).toBe('UNAUTHENTICATED');
    const unsigned = jwt.sign({ knd: 'user', sub: 'u1' }, '', { algorithm: 'none', audience: 'agent-platform-subgraphs', issuer: 'agent-platform-router' });
    expect(code(() => verifyPrincipalProof(unsigned, secret))).toBe('UNAUTHENTICATED');
    expect(code(() => verifyPrincipalProof(signPrincipalProof({ kind: 'anonymous', scopes: [] }, secret, undefined, -10), secret))).toBe('UNAUTHENTICATED');
  });

  it('reuses one proof per principal for half its lifetime, and a checked proof stays checked only for its own bytes and secret', () => {
    const cache = new ProofCache(secret, 60);
    const alice = { kind: 'user', userId: 'alice', scopes: ['tasks:read'] } as const;
    const first = cache.proofFor({ ...alice, scopes: [...alice.scopes] });
    expect(cache.proofFor({ ...alice, scopes: [...alice.scopes] })).toBe(first);
    expect(cache.proofFor({ kind: 'user', userId: 'bob', scopes: [] })).not.toBe(first);
    expect(verifyPrincipalProof(first, secret).principal).toEqual(alice);
    // Verified once, then known: the same answer, frozen so no request can change it for the next.
    const again = verifyPrincipalProof(first, secret);
    expect(again.principal).toEqual(alice);
    expect(Object.isFrozen(again.principal)).toBe(true);
    const [header, payload, signature] = first.split('.');
    const flipped = `${header}.${payload}.${signature.slice(0, -2)}${signature.endsWith('AA') ? 'AB' : 'AA'}`;
    expect(() => verifyPrincipalProof(flipped, secret)).toThrow(/Invalid or expired/);
    expect(() => verifyPrincipalProof(first, 'y'.repeat(40))).toThrow(/Invalid or expired/);
    const forged = `${header}.${Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(payload, 'base64url').toString()), sub: 'mallory' })).toString('base64url')}.${signature}`;
    expect(() => verifyPrincipalProof(forged, secret)).toThrow(/Invalid or expired/);
  });

  it('checks scopes', () => {
    expect(requireScope({ kind: 'user', userId: 'u', scopes: ['tasks:read'] }, 'tasks:read')).toBe('u');
    expect(() => requireScope({ kind: 'api_key', userId: 'u', apiKeyId: 'k', scopes: ['tasks:read'] }, 'tasks:write')).toThrow(/tasks:write/);
    expect(() => requireScope({ kind: 'anonymous', scopes: [] }, 'tasks:read')).toThrow(/Authentication required/);
  });
});

describe('error masking', () => {
  const log = pino({ level: 'silent' });
  const formatted = (error: unknown) => maskError(log, { message: String((error as Error).message), extensions: {} }, new GraphQLError('x', { originalError: error as Error }));

  it('answers SERVICE_UNAVAILABLE when the database is unreachable or dropped the connection, masked otherwise', () => {
    const terminated = Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' });
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
    const wrapped = Object.assign(new Error('driver failed'), { name: 'DriverException', previous: new Error('Connection terminated unexpectedly') });
    for (const error of [terminated, refused, wrapped]) {
      expect(formatted(error)).toEqual({ message: 'A service this request needs is unavailable right now; try again shortly.', extensions: { code: 'SERVICE_UNAVAILABLE' } });
    }
    const bug = Object.assign(new Error('duplicate key value violates unique constraint "users_email_key" at /app/x.ts'), { code: '23505' });
    expect(formatted(bug)).toEqual({ message: 'Internal server error.', extensions: { code: 'INTERNAL_SERVER_ERROR' } });
  });
});
