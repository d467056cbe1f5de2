import { describe, expect, it } from 'vitest';
import { CURRENT_PARAMS, DUMMY_PASSWORD_HASH, hashPassword, needsRehash, parsePasswordHash, verifyPassword } from './passwords.js';

// Cheap parameters where the cost is not what is tested; one full-cost hash checks the real ones.
const FAST = { N: 2 ** 10, r: 8, p: 1 };

describe('password hashing', () => {
  it('stores scrypt with N=2^17, r=8, p=1, a 16-byte salt and a 32-byte key, and verifies it', async () => {
    expect.assertions(6);
    const stored = await hashPassword('correct horse battery staple');
    expect(stored).toMatch(/^scrypt\$131072\$8\$1\$[A-Za-z0-9+/]+=*\$[A-Za-z0-9+/]+=*$/);
    const parsed = parsePasswordHash(stored)!;
    expect(parsed.params).toEqual(CURRENT_PARAMS);
    expect(parsed.salt).toHaveLength(16);
    expect(parsed.hash).toHaveLength(32);
    expect(await verifyPassword('correct horse battery staple', stored)).toBe(true);
    expect(needsRehash(stored)).toBe(false);
  });

  it('refuses a wrong password and salts every hash differently', async () => {
    const a = await hashPassword('same password', FAST);
    const b = await hashPassword('same password', FAST);
    expect(a).not.toBe(b);
    expect(await verifyPassword('same password', a)).toBe(true);
    expect(await verifyPassword('same password', b)).toBe(true);
    expect(await verifyPassword('same passwore', a)).toBe(false);
    expect(await verifyPassword('', a)).toBe(false);
  });

  it('verifies with the parameters written in the stored string and asks for a rehash when they are old', async () => {
    const old = await hashPassword('pass phrase', FAST);
    expect(old.startsWith('scrypt$1024$8$1$')).toBe(true);
    expect(await verifyPassword('pass phrase', old)).toBe(true);
    expect(needsRehash(old)).toBe(true);
  });

  it('treats unreadable or out-of-bounds hashes as no match', async () => {
    const salt = Buffer.alloc(16).toString('base64');
    const key = Buffer.alloc(32).toString('base64');
    for (const stored of ['', 'plain', `bcrypt$1$2$3$${salt}$${key}`, `scrypt$1000$8$1$${salt}$${key}`, `scrypt$${2 ** 24}$8$1$${salt}$${key}`, `scrypt$1024$0$1$${salt}$${key}`, `scrypt$1024$8$1$$${key}`]) {
      expect(parsePasswordHash(stored), stored).toBeNull();
      expect(await verifyPassword('whatever', stored)).toBe(false);
    }
  });

  it('has a dummy hash with the current parameters that matches nothing', async () => {
    expect(parsePasswordHash(DUMMY_PASSWORD_HASH)?.params).toEqual(CURRENT_PARAMS);
    expect(await verifyPassword('', DUMMY_PASSWORD_HASH)).toBe(false);
  });

  it('normalises Unicode so the same characters typed differently match', async () => {
    const stored = await hashPassword('caf\u00e9-password', FAST);
    expect(await verifyPassword('cafe\u0301-password', stored)).toBe(true);
  });
});
