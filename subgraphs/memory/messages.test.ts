import { describe, expect, it } from 'vitest';
import { GraphQLError } from 'graphql';
import { decodeMessageCursor, encodeMessageCursor, estimateTokens } from './messages.js';

describe('message cursors', () => {
  it('round-trip positions, up to the largest bigint', () => {
    expect.assertions(4);
    for (const position of [1n, 42n, 9_007_199_254_740_993n, 2n ** 63n - 1n]) {
      expect(decodeMessageCursor(encodeMessageCursor(position))).toBe(position);
    }
  });

  it('are opaque base64url', () => {
    expect(encodeMessageCursor(7n)).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(encodeMessageCursor(7n)).not.toContain('7');
  });

  it('refuse anything this API did not hand out with BAD_USER_INPUT', () => {
    const b64 = (text: string) => Buffer.from(text).toString('base64url');
    const garbage = ['', 'not-a-cursor', '!!!!', b64('m1:'), b64('m1:-1'), b64('m1:0'), b64('m1:007'), b64('m1:1x'), b64('m2:5'),
      b64(`m1:${2n ** 63n}`), b64('m1:99999999999999999999'), `${encodeMessageCursor(5n)}!`, `${encodeMessageCursor(5n)}=`,
      // A sessions cursor is not a messages cursor.
      b64(`${new Date(0).toISOString()}|00000000-0000-4000-8000-000000000000`)];
    expect.assertions(garbage.length * 2);
    for (const cursor of garbage) {
      try {
        decodeMessageCursor(cursor);
      } catch (error) {
        expect(error).toBeInstanceOf(GraphQLError);
        expect((error as GraphQLError).extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'after' });
      }
    }
  });
});

describe('token estimate', () => {
  it('is one token per four characters, rounded up', () => {
    expect(estimateTokens('')).toBe(0);
    expect(estimateTokens('a')).toBe(1);
    expect(estimateTokens('abcd')).toBe(1);
    expect(estimateTokens('abcde')).toBe(2);
    expect(estimateTokens('x'.repeat(200_000))).toBe(50_000);
  });

  it('counts code points, not UTF-16 units', () => {
    // Four emoji are eight UTF-16 units but four characters.
    expect(estimateTokens('😀😀😀😀')).toBe(1);
    expect(estimateTokens('héllo wörld')).toBe(3);
  });
});
