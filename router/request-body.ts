import { isUtf8 } from 'node:buffer';
import type { IncomingMessage, ServerResponse } from 'node:http';

/**
 * Checks on a GraphQL request body beyond its size, made before anything reads it: bytes that are
 * not UTF-8, and JSON nested deeper than any operation needs (a 10,000-deep variable parses fine,
 * then overflows the stack of whatever serializes it next: the gateway's fetch to a subgraph).
 */

/** How deep the body's JSON may nest, the body object itself being level 1. */
export const MAX_BODY_DEPTH = 100;

/** The body-parser error type of {@link verifyUtf8}'s refusal. */
export const INVALID_UTF8 = 'encoding.invalid';

/**
 * `express.json({ verify })`: refuses bytes that are not UTF-8 (400) instead of letting the
 * decoder turn them into U+FFFD, which would be stored as if the client had sent it.
 */
export function verifyUtf8(_req: IncomingMessage, _res: ServerResponse, body: Buffer): void {
  if (!isUtf8(body)) throw Object.assign(new Error('The request body is not valid UTF-8.'), { status: 400, type: INVALID_UTF8 });
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
