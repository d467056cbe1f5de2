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

export function jsonWithin(value: unknown, field: string, maxBytes: number): unknown {
  if (value === undefined) return null;
  const size = Buffer.byteLength(JSON.stringify(value) ?? 'null');
  if (size > maxBytes) throw badInput(`"${field}" must be at most ${maxBytes} bytes of JSON.`, field);
  return value;
}
