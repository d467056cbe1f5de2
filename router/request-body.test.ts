import { describe, expect, it } from 'vitest';
import { MAX_BODY_DEPTH, nestsDeeperThan, verifyUtf8 } from './request-body.js';

describe('request body checks', () => {
  it('passes UTF-8 and refuses other bytes with a 400', () => {
    expect(() => verifyUtf8(Buffer.from('{"query":"{ me { id } }","variables":{"n":"zoë 😀"}}'))).not.toThrow();
    let error: unknown;
    try {
      verifyUtf8(Buffer.concat([Buffer.from('{"query":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]));
    } catch (caught) {
      error = caught;
    }
    expect(error).toMatchObject({ status: 400, code: 'BAD_REQUEST', message: 'The request body is not valid UTF-8.' });
  });

  it('measures nesting without recursion', () => {
    const nested = (depth: number) => JSON.parse('['.repeat(depth) + ']'.repeat(depth));
    expect(nestsDeeperThan({ query: '{ me { id } }', variables: { a: [1, { b: 2 }] } }, 4)).toBe(false);
    expect(nestsDeeperThan({ variables: { a: [1, { b: {} }] } }, 4)).toBe(true);
    expect(nestsDeeperThan(nested(MAX_BODY_DEPTH), MAX_BODY_DEPTH)).toBe(false);
    expect(nestsDeeperThan(nested(MAX_BODY_DEPTH + 1), MAX_BODY_DEPTH)).toBe(true);
    expect(nestsDeeperThan(nested(100_000), MAX_BODY_DEPTH)).toBe(true);
    expect(nestsDeeperThan('x', 0)).toBe(false);
  });
});
