import type { GraphQLError } from 'graphql';
import { describe, expect, it } from 'vitest';
import { normalizeEmail, validateEmail, validateName, validatePassword } from './users.js';

function fieldOf(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    const { code, field } = (error as GraphQLError).extensions ?? {};
    return { code, field };
  }
  throw new Error('expected an error');
}

describe('sign-up input', () => {
  it('normalises emails by trimming and lower-casing', () => {
    expect(normalizeEmail('  Alice@Example.COM ')).toBe('alice@example.com');
    expect(validateEmail(' Bob.Smith+tag@Mail.Example.org')).toBe('bob.smith+tag@mail.example.org');
    expect(validateEmail('zoë@exämple.de')).toBe('zoë@exämple.de');
  });

  it('refuses emails that are not shaped like one or are longer than 254 characters', () => {
    for (const bad of ['', 'alice', 'alice@', '@example.com', 'alice@example', 'a b@example.com', 'a@b@example.com', 'alice@example..com', 'alice@.example.com', `${'a'.repeat(65)}@example.com`, 'al\u0000ice@example.com']) {
      expect(fieldOf(() => validateEmail(bad)), bad).toEqual({ code: 'BAD_USER_INPUT', field: 'email' });
    }
    const long = `${'a'.repeat(60)}@${'b'.repeat(190)}.com`;
    expect(long.length).toBe(255);
    expect(fieldOf(() => validateEmail(long))).toEqual({ code: 'BAD_USER_INPUT', field: 'email' });
    expect(validateEmail(long.slice(1))).toHaveLength(254);
  });

  it('wants passwords of 8 to 1024 characters, kept as typed', () => {
    expect(validatePassword(' 1234567')).toBe(' 1234567');
    expect(validatePassword('x'.repeat(1024))).toHaveLength(1024);
    for (const bad of ['', '1234567', 'x'.repeat(1025)]) {
      expect(fieldOf(() => validatePassword(bad))).toEqual({ code: 'BAD_USER_INPUT', field: 'password' });
    }
  });

  it('trims names, turns an empty one into none and refuses more than 200 characters', () => {
    expect(validateName(undefined)).toBeNull();
    expect(validateName('  ')).toBeNull();
    expect(validateName(' Alice ')).toBe('Alice');
    expect(validateName('x'.repeat(200))).toHaveLength(200);
    expect(fieldOf(() => validateName('x'.repeat(201)))).toEqual({ code: 'BAD_USER_INPUT', field: 'name' });
  });
});
