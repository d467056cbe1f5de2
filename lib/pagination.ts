import { badInput } from './errors.js';

/**
 * Opaque keyset cursors: base64url of "<createdAt ISO-8601>|<id>". Ordering is (createdAt, id), so a page
 * stays stable while rows are inserted elsewhere.
 */
export interface CursorKey {
  createdAt: Date;
  id: string;
}

export function encodeCursor(key: CursorKey): string {
  return Buffer.from(`${key.createdAt.toISOString()}|${key.id}`, 'utf8').toString('base64url');
}

export function decodeCursor(cursor: string): CursorKey {
  const text = Buffer.from(cursor, 'base64url').toString('utf8');
  const sep = text.indexOf('|');
  const createdAt = new Date(text.slice(0, sep));
  const id = text.slice(sep + 1);
  if (sep < 0 || Number.isNaN(createdAt.getTime()) || !/^[0-9a-f-]{36}$/i.test(id)) {
    throw badInput('The "after" cursor is not one this API returned.', 'after');
  }
  return { createdAt, id };
}

export const MAX_PAGE_SIZE = 100;

/** Validates `first`: 0 < first ≤ MAX_PAGE_SIZE. */
export function pageSize(first: number | null | undefined, fallback: number): number {
  const n = first ?? fallback;
  if (!Number.isInteger(n) || n < 1 || n > MAX_PAGE_SIZE) {
    throw badInput(`"first" must be between 1 and ${MAX_PAGE_SIZE}.`, 'first');
  }
  return n;
}

export interface Connection<T> {
  edges: { cursor: string; node: T }[];
  pageInfo: { hasNextPage: boolean; endCursor: string | null };
  totalCount: number;
}

/** Builds a connection from rows fetched with limit first + 1 (the extra row tells hasNextPage). */
export function toConnection<T extends CursorKey>(rows: T[], first: number, totalCount: number): Connection<T> {
  const page = rows.slice(0, first);
  const edges = page.map((node) => ({ cursor: encodeCursor(node), node }));
  return {
    edges,
    pageInfo: { hasNextPage: rows.length > first, endCursor: edges.at(-1)?.cursor ?? null },
    totalCount,
  };
}

/** MikroORM filter for "after this cursor" in (createdAt, id) ascending order. */
export function afterCursorFilter(after: string | null | undefined): Record<string, unknown> {
  if (!after) return {};
  const key = decodeCursor(after);
  return {
    $or: [{ createdAt: { $gt: key.createdAt } }, { createdAt: key.createdAt, id: { $gt: key.id } }],
  };
}
