import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { GraphQLError } from 'graphql';
import jwt from 'jsonwebtoken';
import { pino } from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { listen } from '../lib/http.js';
import { generateJwtKeyPair } from '../lib/jwt-keys.js';
import { ANONYMOUS, PRINCIPAL_HEADER, REQUEST_ID_HEADER, SCOPES, verifyPrincipalProof } from '../lib/principal.js';
import { anonymousRefusal, Authenticator, principalId, type AuthenticatorOptions } from './authenticate.js';

const SECRET = randomBytes(32).toString('hex');
const KEYS = generateJwtKeyPair();
const log = pino({ level: 'silent' });

/** A fake auth service: `keys` holds the live API keys; every lookup is recorded. */
const keys = new Map<string, { userId: string; apiKeyId: string; scopes: string[] }>();
const lookups: { secret: string; principal: string; requestId?: string }[] = [];
let answerWith: number | undefined;
let delayMs = 0;
let server: Server;
let authUrl: string;

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk));
    req.on('end', async () => {
      const { principal } = verifyPrincipalProof(req.headers[PRINCIPAL_HEADER] as string, SECRET);
      const { secret } = JSON.parse(body) as { secret: string };
      lookups.push({ secret, principal: principal.kind === 'service' ? principal.service : principal.kind, requestId: req.headers[REQUEST_ID_HEADER] as string });
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      const key = keys.get(secret);
      const status = answerWith ?? (key ? 200 : 404);
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(status === 200 ? key : { error: 'invalid' }));
    });
  });
  authUrl = `http://127.0.0.1:${await listen(server, 0, '127.0.0.1')}`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));
beforeEach(() => {
  keys.clear();
  lookups.length = 0;
  answerWith = undefined;
  delayMs = 0;
});

function authenticator(options: Partial<AuthenticatorOptions> = {}): Authenticator {
  return new Authenticator({
    publicKey: KEYS.publicKey,
    issuer: 'agent-platform',
    audience: 'agent-platform-api',
    authServiceUrl: authUrl,
    internalSecret: SECRET,
    log,
    ...options,
  });
}

function token(claims: Record<string, unknown> = {}, options: jwt.SignOptions = {}): string {
  return jwt.sign({ sub: 'user-1', ...claims }, KEYS.privateKey, {
    algorithm: 'RS256',
    issuer: 'agent-platform',
    audience: 'agent-platform-api',
    ...('exp' in claims ? {} : { expiresIn: 600 }),
    ...options,
  });
}

async function refusal(promise: Promise<unknown>): Promise<{ code: unknown; status: unknown; message: string }> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(GraphQLError);
    const { extensions, message } = error as GraphQLError;
    return { code: extensions.code, status: (extensions.http as { status?: number } | undefined)?.status, message };
  }
  throw new Error('expected a refusal');
}

describe('access tokens', () => {
  it('turns a valid token into a user holding every scope', async () => {
    expect(await authenticator().authenticate({ authorization: `Bearer ${token()}` })).toEqual({ kind: 'user', userId: 'user-1', scopes: [...SCOPES] });
    expect(await authenticator().authenticate({ authorization: `bearer  ${token()} ` })).toMatchObject({ userId: 'user-1' });
  });

  it('is anonymous only without any credential', async () => {
    expect(await authenticator().authenticate({})).toBe(ANONYMOUS);
  });

  it.each([
    ['an expired token', () => token({ exp: Math.floor(Date.now() / 1000) - 1 }), /expired/],
    ['a token not valid yet', () => token({}, { notBefore: 60 }), /not valid yet/],
    ['a wrong issuer', () => token({}, { issuer: 'elsewhere' }), /invalid/],
    ['a wrong audience', () => token({}, { audience: 'elsewhere' }), /invalid/],
    ['another key', () => jwt.sign({ sub: 'x' }, generateJwtKeyPair().privateKey, { algorithm: 'RS256', issuer: 'agent-platform', audience: 'agent-platform-api' }), /invalid/],
    ['HS256 keyed with the public key', () => jwt.sign({ sub: 'x', iss: 'agent-platform', aud: 'agent-platform-api' }, KEYS.publicKey, { algorithm: 'HS256' }), /invalid/],
    ['alg none', () => `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from('{"sub":"x"}').toString('base64url')}.`, /invalid/],
    ['no subject', () => token({ sub: undefined }), /no user/],
    ['a token without exp, even one signed with the right key', () => jwt.sign({ sub: 'user-1' }, KEYS.privateKey, { algorithm: 'RS256', issuer: 'agent-platform', audience: 'agent-platform-api' }), /no expiry/],
  ])('refuses %s with 401 UNAUTHENTICATED', async (_name, make, message) => {
    const refused = await refusal(authenticator().authenticate({ authorization: `Bearer ${make()}` }));
    expect(refused).toMatchObject({ code: 'UNAUTHENTICATED', status: 401 });
    expect(refused.message).toMatch(message);
  });

  it('re-checks expiry for a token it has already verified', async () => {
    const auth = authenticator();
    const shortLived = token({ exp: Math.floor(Date.now() / 1000) + 1 });
    expect(await auth.authenticate({ authorization: `Bearer ${shortLived}` })).toMatchObject({ userId: 'user-1' });
    await new Promise((resolve) => setTimeout(resolve, 2100));
    expect(await refusal(auth.authenticate({ authorization: `Bearer ${shortLived}` }))).toMatchObject({ code: 'UNAUTHENTICATED' });
  });

  it('refuses malformed or doubled credentials instead of going anonymous', async () => {
    for (const credentials of [{ authorization: 'Basic dXNlcjpwYXNz' }, { authorization: 'Bearer' }, { authorization: 'Bearer a b' }, { apiKey: ' ' }, { authorization: `Bearer ${token()}`, apiKey: 'ak_1' }]) {
      expect(await refusal(authenticator().authenticate(credentials)), JSON.stringify(credentials)).toMatchObject({ code: 'UNAUTHENTICATED', status: 401 });
    }
  });
});

describe('API keys', () => {
  const secret = 'ak_live_0123456789abcdef';

  it('resolves a key from x-api-key or a non-JWT bearer through the auth service, as the router', async () => {
    keys.set(secret, { userId: 'user-2', apiKeyId: 'key-1', scopes: ['agents:read', 'bogus'] });
    const auth = authenticator({ apiKeyCacheMs: 0 });
    const expected = { kind: 'api_key', userId: 'user-2', apiKeyId: 'key-1', scopes: ['agents:read'] };
    expect(await auth.authenticate({ apiKey: secret }, 'req-1')).toEqual(expected);
    expect(await auth.authenticate({ authorization: `Bearer ${secret}` })).toEqual(expected);
    expect(lookups[0]).toEqual({ secret, principal: 'router', requestId: 'req-1' });
    expect(lookups).toHaveLength(2);
  });

  it('caches answers, valid and invalid, by a hash of the secret only', async () => {
    keys.set(secret, { userId: 'user-2', apiKeyId: 'key-1', scopes: [] });
    const auth = authenticator({ apiKeyCacheMs: 1000 });
    await auth.authenticate({ apiKey: secret });
    await auth.authenticate({ apiKey: secret });
    await refusal(auth.authenticate({ apiKey: 'ak_unknown' }));
    await refusal(auth.authenticate({ apiKey: 'ak_unknown' }));
    expect(lookups).toHaveLength(2);
    const cacheKeys = [...(auth as unknown as { apiKeys: Map<string, unknown> }).apiKeys.keys()];
    expect(cacheKeys).toEqual([createHash('sha256').update(secret).digest('base64url'), createHash('sha256').update('ak_unknown').digest('base64url')]);
  });

  it('stops accepting a revoked key once the cache entry ends (never more than a second)', async () => {
    keys.set(secret, { userId: 'user-2', apiKeyId: 'key-1', scopes: [] });
    const auth = authenticator({ apiKeyCacheMs: 60_000 });
    await auth.authenticate({ apiKey: secret });
    keys.delete(secret);
    await new Promise((resolve) => setTimeout(resolve, 1050));
    expect(await refusal(auth.authenticate({ apiKey: secret }))).toMatchObject({ code: 'UNAUTHENTICATED', status: 401, message: 'The API key is invalid or has been revoked.' });
  });

  it('asks once for concurrent requests with the same key', async () => {
    keys.set(secret, { userId: 'user-2', apiKeyId: 'key-1', scopes: [] });
    delayMs = 50;
    const auth = authenticator();
    const principals = await Promise.all(Array.from({ length: 5 }, () => auth.authenticate({ apiKey: secret })));
    expect(principals.map(principalId)).toEqual(['key-1', 'key-1', 'key-1', 'key-1', 'key-1']);
    expect(lookups).toHaveLength(1);
  });

  it('refuses a key longer than any real one without asking the auth service', async () => {
    const auth = authenticator();
    for (const credentials of [{ apiKey: `ak_${'a'.repeat(8000)}` }, { authorization: `Bearer ak_${'a'.repeat(8000)}` }]) {
      expect(await refusal(auth.authenticate(credentials))).toMatchObject({ code: 'UNAUTHENTICATED', status: 401, message: 'The API key is invalid or has been revoked.' });
    }
    expect(lookups).toHaveLength(0);
  });

  it('answers SERVICE_UNAVAILABLE (503) when the auth service fails, and does not cache that', async () => {
    answerWith = 500;
    const auth = authenticator();
    expect(await refusal(auth.authenticate({ apiKey: secret }))).toMatchObject({ code: 'SERVICE_UNAVAILABLE', status: 503 });
    answerWith = undefined;
    keys.set(secret, { userId: 'user-2', apiKeyId: 'key-1', scopes: [] });
    expect(await auth.authenticate({ apiKey: secret })).toMatchObject({ apiKeyId: 'key-1' });

    const unreachable = authenticator({ authServiceUrl: 'http://127.0.0.1:1' });
    expect(await refusal(unreachable.authenticate({ apiKey: secret }))).toMatchObject({ code: 'SERVICE_UNAVAILABLE', status: 503 });
  });
});

describe('anonymous callers', () => {
  it('may only sign in, sign out, ask `me` and introspect', () => {
    for (const fields of [['me'], ['login'], ['signUp'], ['refreshToken'], ['logout'], ['__schema', '__type', '__typename'], []]) {
      expect(anonymousRefusal(ANONYMOUS, fields), fields.join()).toBeUndefined();
    }
    const refused = anonymousRefusal(ANONYMOUS, ['me', 'agents']);
    expect(refused?.extensions).toMatchObject({ code: 'UNAUTHENTICATED', http: { status: 401 } });
    expect(refused?.message).toContain('"agents"');
    expect(anonymousRefusal({ kind: 'user', userId: 'u', scopes: [] }, ['agents'])).toBeUndefined();
  });

  it('are logged and limited as "anonymous"; others by user or key id', () => {
    expect(principalId(ANONYMOUS)).toBe('anonymous');
    expect(principalId({ kind: 'user', userId: 'u1', scopes: [] })).toBe('u1');
    expect(principalId({ kind: 'api_key', userId: 'u1', apiKeyId: 'k1', scopes: [] })).toBe('k1');
  });
});
