import { randomUUID } from 'node:crypto';
import { UniqueConstraintViolationException, type EntityManager } from '@mikro-orm/postgresql';
import { appError, badInput, unauthenticated } from '../../lib/errors.js';
import { isUuid } from '../../lib/ids.js';
import { DUMMY_PASSWORD_HASH, hashPassword, needsRehash, verifyPassword } from './passwords.js';
import { UserEntity, type UserRow } from './entities.js';

export const MAX_EMAIL_LENGTH = 254;
export const MIN_PASSWORD_LENGTH = 8;
export const MAX_PASSWORD_LENGTH = 1024;
export const MAX_NAME_LENGTH = 200;

/**
 * A deliberately loose shape check (something@domain.tld, no spaces): the only real test of an
 * address is mail reaching it, and strict patterns refuse valid ones.
 */
const EMAIL_SHAPE = /^[^\s@]{1,64}@(?:[^\s@.]+\.)+[^\s@.]{2,}$/u;

/** Trimmed and lower-cased, so one mailbox is one account whatever the capitalisation. */
export function normalizeEmail(email: string): string {
  return email.trim().toLowerCase();
}

export function validateEmail(email: string): string {
  const normalized = normalizeEmail(email);
  if (normalized.length > MAX_EMAIL_LENGTH) throw badInput(`"email" must be at most ${MAX_EMAIL_LENGTH} characters.`, 'email');
  // PostgreSQL refuses NUL in text: without this check the lookup fails with an internal error.
  if (!EMAIL_SHAPE.test(normalized) || normalized.includes('\u0000')) throw badInput('"email" must be an email address like name@example.com.', 'email');
  return normalized;
}

export function validatePassword(password: string): string {
  if (password.length < MIN_PASSWORD_LENGTH || password.length > MAX_PASSWORD_LENGTH) {
    throw badInput(`"password" must have ${MIN_PASSWORD_LENGTH} to ${MAX_PASSWORD_LENGTH} characters.`, 'password');
  }
  return password;
}

/** Trimmed; empty means no name. */
export function validateName(name: string | null | undefined): string | null {
  if (name === null || name === undefined) return null;
  const trimmed = name.trim();
  if (trimmed.length > MAX_NAME_LENGTH) throw badInput(`"name" must be at most ${MAX_NAME_LENGTH} characters.`, 'name');
  if (trimmed.includes('\u0000')) throw badInput('"name" must not contain NUL characters.', 'name');
  return trimmed === '' ? null : trimmed;
}

const emailTaken = () => appError('CONFLICT', 'An account with this email already exists.');

/**
 * Creates an account. A taken email answers CONFLICT: telling people that they already have an
 * account is worth more than hiding it, since signing up reveals it anyway to anyone who tries;
 * the router's rate limits bound how fast addresses can be probed. Login never reveals it.
 */
export async function signUp(em: EntityManager, input: { email: string; password: string; name?: string | null }): Promise<UserRow> {
  const email = validateEmail(input.email);
  const password = validatePassword(input.password);
  const name = validateName(input.name);
  // Checked first so a taken address does not cost a hash; the unique index settles races.
  if (await em.count(UserEntity, { email })) throw emailTaken();
  const now = new Date();
  const user = em.create(UserEntity, {
    id: randomUUID(),
    email,
    name,
    passwordHash: await hashPassword(password),
    createdAt: now,
    updatedAt: now,
  });
  try {
    await em.persistAndFlush(user);
  } catch (error) {
    if (error instanceof UniqueConstraintViolationException) throw emailTaken();
    throw error;
  }
  return user;
}

const invalidCredentials = () => unauthenticated('Invalid email or password.');

/**
 * The user with this email and password. An unknown email still spends one hash so that it takes
 * as long as a wrong password; both answer the same UNAUTHENTICATED.
 */
export async function login(em: EntityManager, input: { email: string; password: string }): Promise<UserRow> {
  const email = normalizeEmail(input.email);
  const password = input.password;
  // Inputs no account can have are refused without a lookup, still after one hash.
  const plausible = email.length <= MAX_EMAIL_LENGTH && !email.includes('\u0000') && password.length <= MAX_PASSWORD_LENGTH;
  const user = plausible ? await em.findOne(UserEntity, { email }) : null;
  const ok = await verifyPassword(plausible ? password : '', user?.passwordHash ?? DUMMY_PASSWORD_HASH);
  if (!user || !ok) throw invalidCredentials();
  if (needsRehash(user.passwordHash)) {
    // The parameters were raised since this hash was made: upgrade it while we know the password.
    user.passwordHash = await hashPassword(password);
    user.updatedAt = new Date();
    await em.flush();
  }
  return user;
}

/** One user by id, or null. */
export async function findUser(em: EntityManager, id: string): Promise<UserRow | null> {
  if (!isUuid(id)) return null;
  return em.findOne(UserEntity, { id });
}

/**
 * Batch for references: only the caller's own user is visible (anonymous callers see none),
 * answered in `ids` order.
 */
export async function usersByIds(em: EntityManager, callerId: string | null, ids: readonly string[]): Promise<(UserRow | null)[]> {
  if (!callerId || !ids.includes(callerId)) return ids.map(() => null);
  const user = await findUser(em, callerId);
  return ids.map((id) => (id === callerId ? user : null));
}
