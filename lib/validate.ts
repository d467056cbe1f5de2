import { badInput } from './errors.js';

/** Input checks that answer BAD_USER_INPUT naming the field. */
export function text(value: string, field: string, limits: { min?: number; max: number }): string {
  const trimmed = value.trim();
  if (trimmed.length < (limits.min ?? 0)) throw badInput(`"${field}" must not be empty.`, field);
  if (value.length > limits.max) throw badInput(`"${field}" must be at most ${limits.max} characters.`, field);
  if (value.includes('\u0000')) throw badInput(`"${field}" must not contain NUL characters.`, field);
  return limits.min ? trimmed : value;
}

export function optionalText(value: string | null | undefined, field: string, max: number): string | null {
  if (value === null || value === undefined) return null;
  return text(value, field, { max });
}

export function numberIn(value: number, field: string, min: number, max: number): number {
  if (!Number.isFinite(value) || value < min || value > max) {
    throw badInput(`"${field}" must be between ${min} and ${max}.`, field);
  }
  return value;
}

/** How deep a JSON input may nest: far beyond any real use, far below what recursion copes with. */
export const MAX_JSON_DEPTH = 64;

/** A UTF-16 surrogate without its pair: JSON can carry it, PostgreSQL refuses it. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * A JSON input PostgreSQL can store (`jsonb`): at most `maxBytes` serialized and
 * {@link MAX_JSON_DEPTH} levels deep, with no NUL character and no lone surrogate in any key or
 * string. Walked without recursion, so a deeply nested value is refused rather than overflowing
 * the stack of whatever serializes it next.
 */
export function jsonWithin(value: unknown, field: string, maxBytes: number): unknown {
  if (value === undefined) return null;
  const unstorable = (text: string) => text.includes('\u0000') || LONE_SURROGATE.test(text);
  const pending: [unknown, number][] = [[value, 1]];
  while (pending.length > 0) {
    const [item, depth] = pending.pop()!;
    if (typeof item === 'string') {
      if (unstorable(item)) throw badInput(`"${field}" must not contain NUL characters or unpaired surrogates.`, field);
    } else if (item !== null && typeof item === 'object') {
      if (depth > MAX_JSON_DEPTH) throw badInput(`"${field}" must not nest more than ${MAX_JSON_DEPTH} levels deep.`, field);
      for (const [key, inner] of Object.entries(item)) {
        if (unstorable(key)) throw badInput(`"${field}" must not contain NUL characters or unpaired surrogates.`, field);
        pending.push([inner, depth + 1]);
      }
    }
  }
  const size = Buffer.byteLength(JSON.stringify(value) ?? 'null');
  if (size > maxBytes) throw badInput(`"${field}" must be at most ${maxBytes} bytes of JSON.`, field);
  return value;
}
