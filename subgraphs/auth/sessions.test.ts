import { createPublicKey } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { describe, expect, it } from 'vitest';
import { generateJwtKeyPair } from '../../lib/jwt-keys.js';
import { newRefreshToken, refreshTokenHash, refreshTokenState, rsaPrivateKey, sha256Hex, signAccessToken, type SessionSettings } from './sessions.js';

const now = new Date('2026-01-01T00:00:00Z');
const later = new Date(now.getTime() + 60_000);
const earlier = new Date(now.getTime() - 60_000);

describe('refresh token rules', () => {
  it('a token is live until it is spent, revoked or expired', () => {
    expect(refreshTokenState({ usedAt: null, revokedAt: null, expiresAt: later }, now)).toBe('live');
    expect(refreshTokenState({ usedAt: earlier, revokedAt: null, expiresAt: later }, now)).toBe('spent');
    expect(refreshTokenState({ usedAt: null, revokedAt: earlier, expiresAt: later }, now)).toBe('revoked');
    expect(refreshTokenState({ usedAt: null, revokedAt: null, expiresAt: earlier }, now)).toBe('expired');
    expect(refreshTokenState({ usedAt: null, revokedAt: null, expiresAt: now }, now)).toBe('expired');
  });

  it('revoked wins over spent, and spent over expired (a late replay still counts as reuse)', () => {
    expect(refreshTokenState({ usedAt: earlier, revokedAt: earlier, expiresAt: later }, now)).toBe('revoked');
    expect(refreshTokenState({ usedAt: earlier, revokedAt: null, expiresAt: earlier }, now)).toBe('spent');
  });

  it('tokens are 32 random bytes in base64url; only their SHA-256 is looked up', () => {
    const tokens = new Set(Array.from({ length: 100 }, newRefreshToken));
    expect(tokens.size).toBe(100);
    for (const token of tokens) {
      expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(Buffer.from(token, 'base64url')).toHaveLength(32);
      expect(refreshTokenHash(token)).toBe(sha256Hex(token));
    }
    expect(sha256Hex('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    for (const garbage of ['', 'short', 'x'.repeat(44), `${'a'.repeat(42)}!`]) expect(refreshTokenHash(garbage)).toBeNull();
  });
});

describe('access tokens', () => {
  it('are RS256 JWTs with sub, iss, aud, iat, exp = iat + ttl and a unique jti', () => {
    const { privateKey, publicKey } = generateJwtKeyPair();
    const settings: SessionSettings = { privateKey: rsaPrivateKey(privateKey), issuer: 'iss-x', audience: 'aud-y', accessTokenTtlSeconds: 900, refreshTokenTtlSeconds: 3600 };
    const token = signAccessToken(settings, 'user-1');
    expect(jwt.decode(token, { complete: true })?.header.alg).toBe('RS256');
    const claims = jwt.verify(token, createPublicKey(publicKey), { algorithms: ['RS256'], issuer: 'iss-x', audience: 'aud-y' }) as jwt.JwtPayload;
    expect(claims.sub).toBe('user-1');
    expect(claims.exp! - claims.iat!).toBe(900);
    expect(Math.abs(claims.iat! - Date.now() / 1000)).toBeLessThan(5);
    expect(claims.jti).toMatch(/^[0-9a-f-]{36}$/);
    expect((jwt.decode(signAccessToken(settings, 'user-1')) as jwt.JwtPayload).jti).not.toBe(claims.jti);
  });

  it('refuses a signing key that is not RSA', async () => {
    const { generateKeyPairSync } = await import('node:crypto');
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256', privateKeyEncoding: { type: 'pkcs8', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } });
    expect(() => rsaPrivateKey(ec.privateKey)).toThrow(/must be an RSA key/);
    expect(() => rsaPrivateKey('-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----')).toThrow(/does not parse/);
  });
});
