import type { GraphQLError } from 'graphql';
import { describe, expect, it } from 'vitest';
import { DEFAULT_API_KEY_SCOPES, SCOPES, type Principal } from '../../lib/principal.js';
import { apiKeySecretHash, newApiKeySecret, PREFIX_LENGTH, resolveScopes } from './api-keys.js';
import { sha256Hex } from './sessions.js';

const user: Principal = { kind: 'user', userId: 'u', scopes: [...SCOPES] };
const key = (scopes: Principal['scopes']): Principal => ({ kind: 'api_key', userId: 'u', apiKeyId: 'k', scopes: scopes as never });

function codeOf(fn: () => unknown): { code: unknown; message: string } {
  try {
    fn();
  } catch (error) {
    return { code: (error as GraphQLError).extensions?.code, message: (error as Error).message };
  }
  throw new Error('expected an error');
}

describe('API key secrets', () => {
  it('look like ak_<8 hex>_<43 base64url>, start with their prefix and are stored as SHA-256', () => {
    const { secret, prefix, secretHash } = newApiKeySecret();
    expect(secret).toMatch(/^ak_[0-9a-f]{8}_[A-Za-z0-9_-]{43}$/);
    expect(prefix).toHaveLength(PREFIX_LENGTH);
    expect(secret.startsWith(`${prefix}_`)).toBe(true);
    expect(secretHash).toBe(sha256Hex(secret));
    expect(secretHash).not.toContain(secret.slice(PREFIX_LENGTH + 1));
    expect(apiKeySecretHash(secret)).toBe(secretHash);
  });

  it('are all different', () => {
    const secrets = new Set(Array.from({ length: 200 }, () => newApiKeySecret().secret));
    expect(secrets.size).toBe(200);
  });

  it('refuses to look up anything that is not shaped like a secret', () => {
    for (const garbage of ['', 'ak_', 'ak_1234567_' + 'a'.repeat(43), 'ak_12345678_' + 'a'.repeat(42), 'AK_12345678_' + 'a'.repeat(43), 'x'.repeat(4000)]) {
      expect(apiKeySecretHash(garbage), garbage.slice(0, 20)).toBeNull();
    }
  });
});

describe('API key scopes', () => {
  it('default to every scope but keys:write', () => {
    expect(resolveScopes(undefined, user)).toEqual(DEFAULT_API_KEY_SCOPES);
    expect(resolveScopes(null, user)).not.toContain('keys:write');
  });

  it('drop duplicates and come back in the canonical order', () => {
    expect(resolveScopes(['tasks:read', 'agents:read', 'tasks:read'], user)).toEqual(['agents:read', 'tasks:read']);
    expect(resolveScopes(['keys:write'], user)).toEqual(['keys:write']);
  });

  it('refuse an unknown scope by name, and an empty list', () => {
    expect(codeOf(() => resolveScopes(['agents:read', 'admin:all'], user))).toEqual({ code: 'BAD_USER_INPUT', message: expect.stringContaining('"admin:all"') });
    expect(codeOf(() => resolveScopes([], user)).code).toBe('BAD_USER_INPUT');
  });

  it('let an API key grant only scopes it holds', () => {
    const writer = key(['keys:write', 'agents:read']);
    expect(resolveScopes(['agents:read'], writer)).toEqual(['agents:read']);
    expect(resolveScopes(undefined, writer)).toEqual(['agents:read']);
    expect(codeOf(() => resolveScopes(['tasks:write'], writer))).toEqual({ code: 'FORBIDDEN', message: expect.stringContaining('"tasks:write"') });
  });
});
