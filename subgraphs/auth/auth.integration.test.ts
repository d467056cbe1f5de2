import { createHash, createPublicKey, randomUUID } from 'node:crypto';
import jwt from 'jsonwebtoken';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateJwtKeyPair } from '../../lib/jwt-keys.js';
import { signPrincipalProof } from '../../lib/principal.js';
import { createTestDatabase, TEST_INTERNAL_SECRET } from '../../tests/support/database.js';
import { asAnonymous, asApiKey, asUser, errorCodes, postGraphQL, proofFor, type GraphQLResponse } from '../../tests/support/graphql.js';
import { startAuthSubgraph } from './server.js';
import { pruneExpiredRefreshTokens } from './sessions.js';
import type { MikroORM } from '@mikro-orm/postgresql';

const keys = generateJwtKeyPair();
const JWT = { issuer: 'test-issuer', audience: 'test-audience' };
const ACCESS_TTL = 600;
const PASSWORD = 'correct horse battery staple';

let url: string;
let base: string;
let db: pg.Client;
let orm: MikroORM;
const disposers: (() => Promise<void>)[] = [];

beforeAll(async () => {
  const database = await createTestDatabase('auth');
  disposers.push(database.drop);
  const server = await startAuthSubgraph({
    port: 0,
    databaseUrl: database.url,
    internalSecret: TEST_INTERNAL_SECRET,
    jwtPrivateKey: keys.privateKey,
    jwt: JWT,
    accessTokenTtlSeconds: ACCESS_TTL,
    logLevel: 'silent',
  });
  disposers.unshift(server.close);
  base = server.url;
  orm = server.orm;
  url = `${server.url}/graphql`;
  db = new pg.Client({ connectionString: database.url });
  await db.connect();
  disposers.unshift(() => db.end());
});
afterAll(async () => {
  for (const dispose of disposers) await dispose();
});

const PAYLOAD = 'accessToken refreshToken expiresIn user { id email name createdAt }';
interface Payload {
  accessToken: string;
  refreshToken: string;
  expiresIn: number;
  user: { id: string; email: string; name: string | null; createdAt: string };
}

const gql = (query: string, variables: Record<string, unknown> = {}, headers: Record<string, string> = asAnonymous()) =>
  postGraphQL(url, query, variables, headers);
const signUp = (variables: { email: string; password: string; name?: string | null }) =>
  gql(`mutation ($email: String!, $password: String!, $name: String) { signUp(email: $email, password: $password, name: $name) { ${PAYLOAD} } }`, variables);
const login = (email: string, password: string) =>
  gql(`mutation ($email: String!, $password: String!) { login(email: $email, password: $password) { ${PAYLOAD} } }`, { email, password });
const refresh = (token: string) => gql(`mutation ($t: String!) { refreshToken(refreshToken: $t) { ${PAYLOAD} } }`, { t: token });
const logout = (token: string) => gql(`mutation ($t: String!) { logout(refreshToken: $t) }`, { t: token });
const sha256 = (value: string) => createHash('sha256').update(value).digest('hex');

function ok<T = any>(response: GraphQLResponse<T>): T {
  expect(response.errors, JSON.stringify(response.errors)).toBeUndefined();
  return response.data as T;
}

const suffix = randomUUID().slice(0, 8);
let alice: Payload;
let bob: Payload;

beforeAll(async () => {
  [alice, bob] = await Promise.all([
    signUp({ email: `  Alice.${suffix}@Example.COM `, password: PASSWORD, name: ' Alice ' }).then((r) => ok(r).signUp as Payload),
    signUp({ email: `bob.${suffix}@example.com`, password: PASSWORD }).then((r) => ok(r).signUp as Payload),
  ]);
});

describe('signUp and login', () => {
  it('creates an account with a normalised email and a scrypt hash that names its parameters', async () => {
    expect(alice.user).toMatchObject({ email: `alice.${suffix}@example.com`, name: 'Alice' });
    expect(bob.user.name).toBeNull();
    expect(new Date(alice.user.createdAt).getTime()).toBeGreaterThan(Date.now() - 60_000);
    const { rows } = await db.query('select password_hash from auth.users where id = $1', [alice.user.id]);
    expect(rows[0].password_hash).toMatch(/^scrypt\$131072\$8\$1\$[^$]+\$[^$]+$/);
    expect(rows[0].password_hash).not.toContain(PASSWORD);
    // The refresh token is stored only as its SHA-256.
    const stored = await db.query('select token_hash from auth.refresh_tokens where user_id = $1', [alice.user.id]);
    expect(stored.rows).toEqual([{ token_hash: sha256(alice.refreshToken) }]);
  });

  it('issues an RS256 access token with sub, iss, aud, iat, exp and jti, and expiresIn = its lifetime', () => {
    expect(jwt.decode(alice.accessToken, { complete: true })?.header.alg).toBe('RS256');
    const claims = jwt.verify(alice.accessToken, createPublicKey(keys.publicKey), { algorithms: ['RS256'], ...JWT }) as jwt.JwtPayload;
    expect(claims.sub).toBe(alice.user.id);
    expect(claims.iss).toBe(JWT.issuer);
    expect(claims.aud).toBe(JWT.audience);
    expect(claims.exp! - claims.iat!).toBe(ACCESS_TTL);
    expect(typeof claims.jti).toBe('string');
    expect(alice.expiresIn).toBe(ACCESS_TTL);
    expect(() => jwt.verify(alice.accessToken, createPublicKey(keys.publicKey), { algorithms: ['RS256'], issuer: 'other' })).toThrow();
  });

  it('refuses a taken email (whatever its case) with CONFLICT, and bad input with BAD_USER_INPUT naming the field', async () => {
    const taken = await signUp({ email: `ALICE.${suffix}@example.com`, password: 'another password' });
    expect(errorCodes(taken)).toEqual(['CONFLICT']);
    expect(taken.errors![0].message).toBe('An account with this email already exists.');
    const cases: [Record<string, string>, string][] = [
      [{ email: 'not-an-email', password: PASSWORD }, 'email'],
      [{ email: `${'a'.repeat(250)}@x.io`, password: PASSWORD }, 'email'],
      [{ email: `c.${suffix}@example.com`, password: 'short' }, 'password'],
      [{ email: `c.${suffix}@example.com`, password: 'x'.repeat(1025) }, 'password'],
      [{ email: `c.${suffix}@example.com`, password: PASSWORD, name: 'n'.repeat(201) }, 'name'],
    ];
    for (const [input, field] of cases) {
      const response = await signUp(input as never);
      expect(errorCodes(response), field).toEqual(['BAD_USER_INPUT']);
      expect(response.errors![0].extensions!.field).toBe(field);
    }
    const { rows } = await db.query('select count(*)::int as n from auth.users');
    expect(rows[0].n).toBe(2);
  });

  it('lets only one of two concurrent sign-ups with the same email through', async () => {
    const email = `race.${suffix}@example.com`;
    const answers = await Promise.all([signUp({ email, password: PASSWORD }), signUp({ email: email.toUpperCase(), password: PASSWORD })]);
    expect(answers.map((response) => errorCodes(response)[0] ?? 'OK').sort()).toEqual(['CONFLICT', 'OK']);
  });

  it('logs in by email in any case; a wrong password and an unknown email get the same answer, after one hash each', async () => {
    const good = ok(await login(`ALICE.${suffix}@example.com`, PASSWORD)).login as Payload;
    expect(good.user.id).toBe(alice.user.id);
    expect(good.refreshToken).not.toBe(alice.refreshToken);

    const started = Date.now();
    const [wrong, unknown] = await Promise.all([login(alice.user.email, 'not the password'), login(`nobody.${suffix}@example.com`, PASSWORD)]);
    for (const response of [wrong, unknown]) {
      expect(errorCodes(response)).toEqual(['UNAUTHENTICATED']);
      expect(response.errors![0].message).toBe('Invalid email or password.');
      expect(response.status).toBe(200);
    }
    // Both spent a full hash: an unknown email is not answered straight from the lookup.
    expect(Date.now() - started).toBeGreaterThan(150);
  });
});

describe('refresh tokens', () => {
  it('rotates: the new token works once, the spent one is refused and its reuse revokes the whole family', async () => {
    const session = ok(await login(bob.user.email, PASSWORD)).login as Payload;
    const first = ok(await refresh(session.refreshToken)).refreshToken as Payload;
    expect(first.refreshToken).not.toBe(session.refreshToken);
    expect(first.user.id).toBe(bob.user.id);
    expect(first.expiresIn).toBe(ACCESS_TTL);
    expect((jwt.decode(first.accessToken) as jwt.JwtPayload).sub).toBe(bob.user.id);
    const second = ok(await refresh(first.refreshToken)).refreshToken as Payload;

    // Presenting a spent token again: refused, and the live `second` dies with its family.
    const reuse = await refresh(first.refreshToken);
    expect(errorCodes(reuse)).toEqual(['UNAUTHENTICATED']);
    expect(reuse.errors![0].message).toMatch(/already used/);
    expect(errorCodes(await refresh(second.refreshToken))).toEqual(['UNAUTHENTICATED']);
    const family = await db.query('select count(*)::int as total, count(revoked_at)::int as revoked from auth.refresh_tokens where family_id = (select family_id from auth.refresh_tokens where token_hash = $1)', [sha256(session.refreshToken)]);
    expect(family.rows[0]).toEqual({ total: 3, revoked: 3 });

    // Bob's other login (from signUp) is another family and still works.
    bob = ok(await refresh(bob.refreshToken)).refreshToken as Payload;
  });

  it('refuses unknown, malformed and expired tokens with UNAUTHENTICATED (an expired one is not reuse)', async () => {
    for (const token of ['', 'garbage', 'A'.repeat(43), 'x'.repeat(5000)]) {
      expect(errorCodes(await refresh(token)), token.slice(0, 10)).toEqual(['UNAUTHENTICATED']);
    }
    const current = bob.refreshToken;
    await db.query(`update auth.refresh_tokens set expires_at = now() - interval '1 second' where token_hash = $1`, [sha256(current)]);
    const expired = await refresh(current);
    expect(errorCodes(expired)).toEqual(['UNAUTHENTICATED']);
    expect(expired.errors![0].message).toBe('Invalid or expired refresh token.');
    const { rows } = await db.query('select used_at, revoked_at from auth.refresh_tokens where token_hash = $1', [sha256(current)]);
    expect(rows[0]).toEqual({ used_at: null, revoked_at: null });
  });

  it('lets exactly one of several concurrent refreshes with the same token win', async () => {
    const session = ok(await login(alice.user.email, PASSWORD)).login as Payload;
    const answers = await Promise.all(Array.from({ length: 5 }, () => refresh(session.refreshToken)));
    const winners = answers.filter((response) => !response.errors);
    expect(winners).toHaveLength(1);
    for (const loser of answers.filter((response) => response.errors)) expect(errorCodes(loser)).toEqual(['UNAUTHENTICATED']);
    // The losers presented a spent token, which is reuse: the winner's successor is revoked too.
    expect(errorCodes(await refresh(winners[0].data.refreshToken.refreshToken))).toEqual(['UNAUTHENTICATED']);
  });

  it('logout revokes the family: true for a live token, false afterwards and for unknown tokens', async () => {
    const session = ok(await login(alice.user.email, PASSWORD)).login as Payload;
    const next = ok(await refresh(session.refreshToken)).refreshToken as Payload;
    // Logging out with the spent token still ends the login: its live successor is revoked.
    expect(ok(await logout(session.refreshToken)).logout).toBe(true);
    expect(errorCodes(await refresh(next.refreshToken))).toEqual(['UNAUTHENTICATED']);
    expect(ok(await logout(next.refreshToken)).logout).toBe(false);
    expect(ok(await logout('A'.repeat(43))).logout).toBe(false);
    expect(ok(await logout('not a token')).logout).toBe(false);
    // Alice's own session from signUp is untouched.
    alice = ok(await refresh(alice.refreshToken)).refreshToken as Payload;
    expect(ok(await logout(alice.refreshToken)).logout).toBe(true);
  });
});

describe('pruning', () => {
  it('deletes logins whose every token has expired and keeps families with a live token', async () => {
    const [dead, live] = await Promise.all(
      [alice, bob].map(async ({ user }) => ok(await refresh((ok(await login(user.email, PASSWORD)).login as Payload).refreshToken)).refreshToken as Payload),
    );
    const familyOf = async (token: string) => (await db.query('select family_id from auth.refresh_tokens where token_hash = $1', [sha256(token)])).rows[0]?.family_id as string | undefined;
    const deadFamily = (await familyOf(dead.refreshToken))!;
    const liveFamily = (await familyOf(live.refreshToken))!;
    await db.query(`update auth.refresh_tokens set expires_at = now() - interval '1 minute' where family_id = $1`, [deadFamily]);
    // In the live family only the spent tokens have expired.
    await db.query(`update auth.refresh_tokens set expires_at = now() - interval '1 minute' where family_id = $1 and used_at is not null`, [liveFamily]);
    const before = (await db.query('select count(*)::int as n from auth.refresh_tokens where family_id = $1', [liveFamily])).rows[0].n;
    expect(before).toBeGreaterThan(1);

    expect(await pruneExpiredRefreshTokens(orm.em.fork())).toBeGreaterThanOrEqual(2);
    expect(await familyOf(dead.refreshToken)).toBeUndefined();
    expect((await db.query('select count(*)::int as n from auth.refresh_tokens where family_id = $1', [liveFamily])).rows[0].n).toBe(before);
    expect(ok(await refresh(live.refreshToken)).refreshToken.user.id).toBe(bob.user.id);
  });
});

describe('me and User references', () => {
  it('me is the caller, or null when anonymous or unknown', async () => {
    expect(ok(await gql('{ me { id email name } }', {}, asUser(alice.user.id))).me).toEqual({ id: alice.user.id, email: alice.user.email, name: 'Alice' });
    expect(ok(await gql('{ me { id } }', {}, asApiKey(bob.user.id, ['agents:read']))).me).toEqual({ id: bob.user.id });
    expect(ok(await gql('{ me { id } }', {}, asAnonymous())).me).toBeNull();
    expect(ok(await gql('{ me { id } }', {}, asUser(randomUUID()))).me).toBeNull();
  });

  it('resolves a User reference only for the user themself', async () => {
    const entities = `query ($r: [_Any!]!) { _entities(representations: $r) { ... on User { id email name createdAt } } }`;
    const r = [alice.user.id, bob.user.id, alice.user.id, 'not-a-uuid'].map((id) => ({ __typename: 'User', id }));
    const self = ok(await gql(entities, { r }, asUser(alice.user.id)))._entities;
    expect(self).toEqual([alice.user, null, alice.user, null]);
    expect(ok(await gql(entities, { r }, asUser(randomUUID())))._entities).toEqual([null, null, null, null]);
    expect(ok(await gql(entities, { r }, asAnonymous()))._entities).toEqual([null, null, null, null]);
  });
});

const KEY_FIELDS = 'id name prefix scopes createdAt lastUsedAt revokedAt';
const createKey = (headers: Record<string, string>, name: string, scopes?: string[] | null) =>
  gql(`mutation ($name: String!, $scopes: [String!]) { createApiKey(name: $name, scopes: $scopes) { secret apiKey { ${KEY_FIELDS} } } }`, { name, scopes }, headers);
const listKeys = (headers: Record<string, string>) => gql(`{ apiKeys { ${KEY_FIELDS} } }`, {}, headers);
const revokeKey = (headers: Record<string, string>, id: string) => gql(`mutation ($id: ID!) { revokeApiKey(id: $id) { ${KEY_FIELDS} } }`, { id }, headers);

const routerProof = () => proofFor({ kind: 'service', service: 'router', scopes: [] });
const verify = (body: unknown, headers: Record<string, string> = routerProof(), raw?: string) =>
  fetch(`${base}/internal/api-keys/verify`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: raw ?? JSON.stringify(body) });

describe('API keys', () => {
  it('creates a key whose secret is shown once and stored only as its SHA-256, and lists keys newest first', async () => {
    const created = ok(await createKey(asUser(alice.user.id), ' CI ')).createApiKey;
    expect(created.secret).toMatch(/^ak_[0-9a-f]{8}_[A-Za-z0-9_-]{43}$/);
    expect(created.secret.startsWith(`${created.apiKey.prefix}_`)).toBe(true);
    expect(created.apiKey).toMatchObject({ name: 'CI', prefix: created.secret.slice(0, 11), lastUsedAt: null, revokedAt: null });
    expect(created.apiKey.scopes).toEqual(['agents:read', 'agents:write', 'memory:read', 'memory:write', 'tasks:read', 'tasks:write', 'keys:read']);
    const { rows } = await db.query('select * from auth.api_keys where id = $1', [created.apiKey.id]);
    expect(rows[0].secret_hash).toBe(sha256(created.secret));
    expect(JSON.stringify(rows[0])).not.toContain(created.secret.slice(12));

    const second = ok(await createKey(asUser(alice.user.id), 'deploy', ['tasks:write', 'agents:read', 'tasks:write'])).createApiKey;
    expect(second.apiKey.scopes).toEqual(['agents:read', 'tasks:write']);
    expect(ok(await listKeys(asUser(alice.user.id))).apiKeys.map((k: { id: string }) => k.id)).toEqual([second.apiKey.id, created.apiKey.id]);
    expect(ok(await listKeys(asUser(bob.user.id))).apiKeys).toEqual([]);
  });

  it('refuses unknown scopes by name, empty names, callers without the scope and anonymous callers', async () => {
    const unknown = await createKey(asUser(alice.user.id), 'x', ['agents:read', 'root']);
    expect(errorCodes(unknown)).toEqual(['BAD_USER_INPUT']);
    expect(unknown.errors![0].message).toContain('"root"');
    expect(errorCodes(await createKey(asUser(alice.user.id), '  '))).toEqual(['BAD_USER_INPUT']);
    expect(errorCodes(await createKey(asUser(alice.user.id), 'n'.repeat(201)))).toEqual(['BAD_USER_INPUT']);
    const reader = asApiKey(alice.user.id, ['keys:read']);
    expect(errorCodes(await createKey(reader, 'x'))).toEqual(['FORBIDDEN']);
    expect(errorCodes(await listKeys(asApiKey(alice.user.id, ['agents:read'])))).toEqual(['FORBIDDEN']);
    expect(ok(await listKeys(reader)).apiKeys.length).toBeGreaterThan(0);
    // A key may mint keys only with scopes it holds itself.
    const writer = asApiKey(alice.user.id, ['keys:write', 'agents:read']);
    expect(errorCodes(await createKey(writer, 'x', ['tasks:write']))).toEqual(['FORBIDDEN']);
    expect(ok(await createKey(writer, 'narrow')).createApiKey.apiKey.scopes).toEqual(['agents:read']);
    for (const response of [await createKey(asAnonymous(), 'x'), await listKeys(asAnonymous())]) {
      expect(errorCodes(response)).toEqual(['UNAUTHENTICATED']);
    }
  });

  it("revokes the caller's own key idempotently; another user's or an unknown id is NOT_FOUND", async () => {
    const { apiKey } = ok(await createKey(asUser(alice.user.id), 'to revoke')).createApiKey;
    for (const [headers, id] of [[asUser(bob.user.id), apiKey.id], [asUser(alice.user.id), randomUUID()], [asUser(alice.user.id), 'nope']] as const) {
      const response = await revokeKey(headers, id);
      expect(errorCodes(response)).toEqual(['NOT_FOUND']);
      expect(JSON.stringify(response)).not.toContain('to revoke');
    }
    expect(errorCodes(await revokeKey(asApiKey(alice.user.id, ['keys:read']), apiKey.id))).toEqual(['FORBIDDEN']);
    const revoked = ok(await revokeKey(asUser(alice.user.id), apiKey.id)).revokeApiKey;
    expect(revoked.revokedAt).not.toBeNull();
    const again = ok(await revokeKey(asUser(alice.user.id), apiKey.id)).revokeApiKey;
    expect(again.revokedAt).toBe(revoked.revokedAt);
    const listed = ok(await listKeys(asUser(alice.user.id))).apiKeys.find((k: { id: string }) => k.id === apiKey.id);
    expect(listed.revokedAt).toBe(revoked.revokedAt);
  });

  it('holds at most 100 live keys per user, even when created concurrently', async () => {
    const user = ok(await signUp({ email: `many.${suffix}@example.com`, password: PASSWORD })).signUp.user.id as string;
    const answers = await Promise.all(Array.from({ length: 104 }, (_, i) => createKey(asUser(user), `k${i}`, ['agents:read'])));
    const created = answers.filter((response) => !response.errors);
    expect(created).toHaveLength(100);
    for (const refused of answers.filter((response) => response.errors)) expect(errorCodes(refused)).toEqual(['BAD_USER_INPUT']);
    ok(await revokeKey(asUser(user), created[0].data.createApiKey.apiKey.id));
    expect(ok(await createKey(asUser(user), 'after revoking')).createApiKey.apiKey.name).toBe('after revoking');
    expect(ok(await listKeys(asUser(user))).apiKeys).toHaveLength(101);
  });
});

describe('POST /internal/api-keys/verify', () => {
  it('answers a live key with its user, id and scopes, and records the use at most once a minute', async () => {
    const { secret, apiKey } = ok(await createKey(asUser(bob.user.id), 'verify me', ['agents:read', 'tasks:write'])).createApiKey;
    const response = await verify({ secret });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ userId: bob.user.id, apiKeyId: apiKey.id, scopes: ['agents:read', 'tasks:write'] });

    const lastUsed = async () => (await db.query('select last_used_at from auth.api_keys where id = $1', [apiKey.id])).rows[0].last_used_at as Date | null;
    // The write is not awaited by the answer; it lands right after.
    let first: Date | null = null;
    for (let i = 0; i < 50 && !first; i++) {
      first = await lastUsed();
      if (!first) await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(first).not.toBeNull();
    expect((await verify({ secret })).status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(await lastUsed()).toEqual(first);

    // A minute later the next use is recorded again.
    await db.query(`update auth.api_keys set last_used_at = now() - interval '2 minutes' where id = $1`, [apiKey.id]);
    const stale = await lastUsed();
    expect((await verify({ secret })).status).toBe(200);
    let updated = stale;
    for (let i = 0; i < 50 && updated?.getTime() === stale?.getTime(); i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      updated = await lastUsed();
    }
    expect(updated!.getTime()).toBeGreaterThan(Date.now() - 10_000);
    expect(ok(await listKeys(asUser(bob.user.id))).apiKeys.find((k: { id: string }) => k.id === apiKey.id).lastUsedAt).toBe(updated!.toISOString());
  });

  it('answers 404 invalid for revoked, unknown and malformed keys', async () => {
    const { secret, apiKey } = ok(await createKey(asUser(bob.user.id), 'revoked')).createApiKey;
    ok(await revokeKey(asUser(bob.user.id), apiKey.id));
    const unknown = `ak_00000000_${'A'.repeat(43)}`;
    for (const candidate of [secret, unknown, 'ak_nope', '', secret.toUpperCase()]) {
      const response = await verify({ secret: candidate });
      expect(response.status, candidate).toBe(404);
      expect(await response.json()).toEqual({ error: 'invalid' });
    }
  });

  it('answers 401 to anyone but the router, before reading the body', async () => {
    const { secret } = ok(await createKey(asUser(bob.user.id), 'probe')).createApiKey;
    const strangers: Record<string, string>[] = [
      {},
      { 'x-principal-proof': 'forged' },
      proofFor({ kind: 'service', service: 'task', scopes: [] }),
      asUser(bob.user.id),
      asAnonymous(),
      { 'x-principal-proof': signPrincipalProof({ kind: 'service', service: 'router', scopes: [] }, 'another-secret-that-is-long-enough-0123456789') },
    ];
    for (const headers of strangers) {
      const response = await verify({ secret }, headers);
      expect(response.status).toBe(401);
      expect(await response.json()).toEqual({ error: 'unauthenticated' });
    }
    const oversized = await verify(undefined, {}, JSON.stringify({ secret: 'x'.repeat(10_000) }));
    expect(oversized.status).toBe(401);
  });

  it('answers 400 to a body without a string secret and 413 beyond 4 KB', async () => {
    for (const raw of ['{"secret": 1}', '{}', '[]', 'not json', 'null']) {
      const response = await verify(undefined, routerProof(), raw);
      expect(response.status, raw).toBe(400);
      expect(await response.json()).toEqual({ error: 'bad_request' });
    }
    const large = await verify({ secret: 'x'.repeat(5000) });
    expect(large.status).toBe(413);
    expect(await large.json()).toEqual({ error: 'payload_too_large' });
  });
});

describe('the door', () => {
  it('refuses GraphQL requests without a valid router proof with 401 UNAUTHENTICATED', async () => {
    const strangers: Record<string, string>[] = [{}, { 'x-principal-proof': 'forged' }, { authorization: `Bearer ${alice.accessToken}` }];
    for (const headers of strangers) {
      const response = await postGraphQL(url, '{ me { id } }', {}, headers);
      expect(response.status).toBe(401);
      expect(errorCodes(response)).toEqual(['UNAUTHENTICATED']);
    }
  });

  it('answers health and readiness without a proof', async () => {
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ checks: { database: true } });
  });

  it('never exposes password or secret hashes in the schema', async () => {
    const types = ok(await gql(`{ __schema { types { name fields { name } } } }`)).__schema.types as { name: string; fields: { name: string }[] | null }[];
    const fields = types.flatMap((type) => (type.fields ?? []).map((field) => `${type.name}.${field.name}`));
    expect(fields.filter((name) => /hash|password/i.test(name))).toEqual([]);
  });
});
