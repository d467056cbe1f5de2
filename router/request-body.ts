import { isUtf8 } from 'node:buffer';
import { RequestError } from '../lib/graphql-http.js';

/**
 * Checks on a GraphQL request body beyond its size, made before anything reads it: bytes that are
 * not UTF-8, and JSON nested deeper than any operation needs (a 10,000-deep variable parses fine,
 * then overflows the stack of whatever serializes it next: the gateway's fetch to a subgraph).
 */

/** How deep the body's JSON may nest, the body object itself being level 1. */
export const MAX_BODY_DEPTH = 100;

/**
 * `readJsonBody`'s `verify`: refuses bytes that are not UTF-8 (400 BAD_REQUEST) instead of letting
 * the decoder turn them into U+FFFD, which would be stored as if the client had sent it.
 */
export function verifyUtf8(body: Buffer): void {
  if (!isUtf8(body)) throw new RequestError(400, 'BAD_REQUEST', 'The request body is not valid UTF-8.');
}

/** True when `value` nests more than `maxDepth` arrays and objects deep; walked without recursion. */
export function nestsDeeperThan(value: unknown, maxDepth: number): boolean {
  if (value === null || typeof value !== 'object') return false;
  const pending: [object, number][] = [[value, 1]];
  while (pending.length > 0) {
    const [item, depth] = pending.pop()!;
    if (depth > maxDepth) return true;
    for (const inner of Array.isArray(item) ? item : Object.values(item)) {
      if (inner !== null && typeof inner === 'object') pending.push([inner, depth + 1]);
    }
  }
  return false;
}
