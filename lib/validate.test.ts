import { describe, expect, it } from 'vitest';
import { jsonWithin, MAX_JSON_DEPTH } from './validate.js';

function nested(depth: number): unknown {
  let value: unknown = 'x';
  for (let i = 1; i < depth; i++) value = { a: value };
  return value;
}

const codeOf = (run: () => unknown): unknown => {
  try {
    run();
    return undefined;
  } catch (error) {
    return (error as { extensions?: { code?: string } }).extensions?.code ?? error;
  }
};

describe('jsonWithin', () => {
  it('keeps JSON that PostgreSQL can store', () => {
    const value = { team: 'docs', tags: ['a', 'é', '😀'], n: 1, deep: nested(MAX_JSON_DEPTH) };
    expect(jsonWithin(value, 'metadata', 64 * 1024)).toBe(value);
    expect(jsonWithin(undefined, 'metadata', 10)).toBeNull();
  });

  it('refuses deep nesting as BAD_USER_INPUT without recursing (10,000 and 100,000 levels)', () => {
    expect(codeOf(() => jsonWithin(nested(MAX_JSON_DEPTH + 2), 'metadata', 64 * 1024))).toBe('BAD_USER_INPUT');
    expect(codeOf(() => jsonWithin(nested(10_000), 'metadata', 64 * 1024))).toBe('BAD_USER_INPUT');
    let list: unknown = 1;
    for (let i = 0; i < 100_000; i++) list = [list];
    expect(codeOf(() => jsonWithin(list, 'metadata', 64 * 1024))).toBe('BAD_USER_INPUT');
  });

  it('refuses NUL characters and unpaired surrogates in keys and strings, which jsonb cannot hold', () => {
    for (const bad of [{ a: 'x\u0000y' }, { 'k\u0000': 1 }, ['\uD800'], { a: 'x\uDC00' }, { '\uD83D': 1 }]) {
      expect(codeOf(() => jsonWithin(bad, 'metadata', 64 * 1024)), JSON.stringify(bad)).toBe('BAD_USER_INPUT');
    }
  });

  it('refuses more than maxBytes', () => {
    expect(codeOf(() => jsonWithin({ a: 'x'.repeat(100) }, 'metadata', 50))).toBe('BAD_USER_INPUT');
  });
});
