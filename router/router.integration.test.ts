import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { composeServices } from '@apollo/composition';
import { getIntrospectionQuery, parse } from 'graphql';
import { Redis } from 'ioredis';
import jwt from 'jsonwebtoken';
import { pino, type Logger } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { appError, forbidden, unauthenticated } from '../lib/errors.js';
import { headerValue, readJsonBody, sendJson } from '../lib/graphql-http.js';
import { generateJwtKeyPair } from '../lib/jwt-keys.js';
import { PRINCIPAL_HEADER, verifyPrincipalProof } from '../lib/principal.js';
import { startSubgraphServer, type BaseContext, type RunningServer } from '../lib/subgraph-server.js';
import { routerConfigFromEnv, type RouterConfig } from './config.js';
import { startRouter } from './server.js';

/**
 * The router in front of three tiny subgraphs (auth, agent, task) built with @apollo/subgraph and
 * lib/subgraph-server.ts, all on free ports, driven with fetch like a frontend.
 */
const SECRET = randomBytes(32).toString('hex');
const KEYS = generateJwtKeyPair();
const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const silent = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });

const FEDERATION = 'extend schema @link(url: "https://specs.apollo.dev/federation/v2.7", import: ["@key"])';

const AUTH_SDL = `${FEDERATION}
  type User @key(fields: "id") { id: ID! email: String! }
  type AuthPayload { accessToken: String! user: User }
  type Query { me: User }
  type Mutation {
    signUp(email: String!, password: String!): AuthPayload!
    login(email: String!, password: String!): AuthPayload!
    refreshToken(refreshToken: String!): AuthPayload!
    logout(refreshToken: String!): Boolean!
  }`;

const AGENT_SDL = `${FEDERATION}
  type User @key(fields: "id", resolvable: false) { id: ID! }
  type Agent @key(fields: "id") { id: ID! name: String! owner: User! parent: Agent children: [Agent!]! }
  type AgentEdge { node: Agent! }
  type AgentConnection { edges: [AgentEdge!]! totalCount: Int! }
  type Whoami { kind: String! userId: String apiKeyId: String scopes: [String!]! requestId: String! headers: [String!]! }
  type Query {
    agents(first: Int = 20): AgentConnection!
    whoami: Whoami!
    boom: String
    notYours: String
    badRequest: String
    slow(ms: Int!): String
  }`;

const TASK_SDL = `${FEDERATION}
  type Query { taskCount: Int! }`;

/** Live API keys of the fake auth service: secret → answer; deleting one revokes it. */
const apiKeys = new Map<string, { userId: string; apiKeyId: string; scopes: string[] }>();
let apiKeyLookups = 0;
/** Header names the agent subgraph received on its last request. */
let agentSawHeaders: string[] = [];

const subgraphs: Record<'auth' | 'agent' | 'task', RunningServer> = {} as never;
let supergraphSdl: string;

async function authRoutes(req: IncomingMessage, res: ServerResponse, path: string): Promise<boolean> {
  if (path !== '/internal/api-keys/verify' || req.method !== 'POST') return false;
  apiKeyLookups += 1;
  const { principal } = verifyPrincipalProof(headerValue(req, PRINCIPAL_HEADER), SECRET);
  if (principal.kind !== 'service' || principal.service !== 'router') return sendJson(res, 401, { error: 'unauthenticated' }), true;
  const key = apiKeys.get(((await readJsonBody(req, { limitBytes: 4096 })) as { secret: string }).secret);
  if (!key) return sendJson(res, 404, { error: 'invalid' }), true;
  sendJson(res, 200, key);
  return true;
}

async function startSubgraphs(): Promise<void> {
  const common = { port: 0, internalSecret: SECRET, log: silent, createContext: (base: BaseContext) => base };
  subgraphs.auth = await startSubgraphServer({
    ...common,
    name: 'auth',
    typeDefs: parse(AUTH_SDL),
    routes: authRoutes,
    resolvers: {
      Query: { me: (_: unknown, __: unknown, ctx: BaseContext) => (ctx.principal.kind === 'anonymous' ? null : { id: ctx.principal.kind === 'user' || ctx.principal.kind === 'api_key' ? ctx.principal.userId : '?', email: 'a@example.com' }) },
      Mutation: {
        login: () => {
          throw unauthenticated('Wrong email or password.');
        },
        signUp: () => ({ accessToken: 'token', user: { id: 'u1', email: 'a@example.com' } }),
        refreshToken: () => ({ accessToken: 'token', user: null }),
        logout: () => true,
      },
    },
  });
  subgraphs.agent = await startSubgraphServer({
    ...common,
    name: 'agent',
    typeDefs: parse(AGENT_SDL),
    routes: (req, _res, path) => {
      if (path === '/graphql') agentSawHeaders = Object.keys(req.headers);
      return false;
    },
    resolvers: {
      Query: {
        agents: (_: unknown, args: { first: number }) => ({
          totalCount: 2,
          edges: [{ node: { id: 'a1', name: 'One' } }, { node: { id: 'a2', name: 'Two' } }].slice(0, args.first),
        }),
        whoami: (_: unknown, __: unknown, ctx: BaseContext) => ({
          kind: ctx.principal.kind,
          userId: 'userId' in ctx.principal ? ctx.principal.userId : null,
          apiKeyId: 'apiKeyId' in ctx.principal ? ctx.principal.apiKeyId : null,
          scopes: ctx.principal.scopes,
          requestId: ctx.requestId,
          headers: agentSawHeaders,
        }),
        boom: () => {
          throw new Error('connection to postgres://admin:hunter2@db failed');
        },
        notYours: () => {
          throw forbidden('This agent is not yours.');
        },
        // BAD_REQUEST carries HTTP 400, so the subgraph's whole answer is a 400.
        badRequest: () => {
          throw appError('BAD_REQUEST', 'That request makes no sense.');
        },
        slow: async (_: unknown, args: { ms: number }) => {
          await new Promise((resolve) => setTimeout(resolve, args.ms));
          return 'done';
        },
      },
      Agent: { owner: () => ({ id: 'u1' }), parent: () => null, children: () => [] },
    },
  });
  subgraphs.task = await startSubgraphServer({ ...common, name: 'task', typeDefs: parse(TASK_SDL), resolvers: { Query: { taskCount: () => 7 } } });
  const composed = composeServices(
    (['auth', 'agent', 'task'] as const).map((name) => ({
      name,
      url: `${subgraphs[name].url}/graphql`,
      typeDefs: parse({ auth: AUTH_SDL, agent: AGENT_SDL, task: TASK_SDL }[name]),
    })),
  );
  if (composed.errors) throw new Error(composed.errors.map((e) => e.message).join('\n'));
  supergraphSdl = composed.supergraphSdl;
}

function configFor(env: Record<string, string> = {}): RouterConfig {
  return routerConfigFromEnv(
    {
      INTERNAL_SECRET: SECRET,
      JWT_PUBLIC_KEY: KEYS.publicKey,
      AUTH_URL: subgraphs.auth.url,
      AGENT_URL: subgraphs.agent.url,
      TASK_URL: subgraphs.task.url,
      PORT: '0',
      HOST: '127.0.0.1',
      LOG_LEVEL: 'silent',
      ...env,
    },
    { supergraphSdl },
  );
}

/** Log lines the router wrote, parsed. */
function capturingLogger(): { log: Logger; lines: Record<string, unknown>[]; text: () => string } {
  const raw: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      raw.push(chunk.toString());
      done();
    },
  });
  const log = pino({ level: 'info' }, stream);
  return {
    log,
    get lines() {
      return raw.join('').split('\n').filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>);
    },
    text: () => raw.join(''),
  };
}

const disposers: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (disposers.length) await disposers.pop()!();
});

async function router(env: Record<string, string> = {}, deps: Parameters<typeof startRouter>[1] = {}) {
  const running = await startRouter(configFor(env), { log: silent, ...deps });
  disposers.push(running.close);
  return running;
}

interface Answer {
  status: number;
  headers: Headers;
  body: { data?: any; errors?: { message: string; extensions?: { code?: string } }[] } | null;
  text: string;
  codes: (string | undefined)[];
}

async function post(base: string, body: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  const response = await fetch(`${base}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await response.text();
  let parsed: Answer['body'] = null;
  try {
    parsed = JSON.parse(text);
  } catch {
    // left null: the assertions say what was expected
  }
  return { status: response.status, headers: response.headers, body: parsed, text, codes: (parsed?.errors ?? []).map((e) => e.extensions?.code) };
}

const gql = (base: string, query: string, headers: Record<string, string> = {}, variables?: Record<string, unknown>) =>
  post(base, { query, variables }, headers);

function accessToken(claims: Record<string, unknown> = {}, options: jwt.SignOptions = {}): string {
  return jwt.sign({ sub: 'user-1', ...claims }, KEYS.privateKey, {
    algorithm: 'RS256',
    issuer: 'agent-platform',
    audience: 'agent-platform-api',
    ...('exp' in claims ? {} : { expiresIn: 600 }),
    ...options,
  });
}
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

beforeAll(startSubgraphs);
afterAll(async () => {
  for (const subgraph of Object.values(subgraphs)) await subgraph?.close().catch(() => undefined);
});

describe('authentication', () => {
  it('runs anonymous sign-in operations and `me`, and refuses everything else with 401', async () => {
    const { url } = await router();
    const me = await gql(url, '{ me { id } }');
    expect(me.status).toBe(200);
    expect(me.body?.data).toEqual({ me: null });

    const login = await gql(url, 'mutation { login(email: "a@b.c", password: "nope") { accessToken } }');
    expect(login.codes).toEqual(['UNAUTHENTICATED']);
    expect(login.body?.errors?.[0].message).toBe('Wrong email or password.');

    const agents = await gql(url, '{ agents { totalCount } }');
    expect(agents.status).toBe(401);
    expect(agents.codes).toEqual(['UNAUTHENTICATED']);
    expect(agents.body?.errors?.[0].message).toContain('agents');
    expect(agents.body?.data).toBeUndefined();

    // Mixing an allowed field with a protected one is refused as a whole.
    expect((await gql(url, '{ me { id } agents { totalCount } }')).status).toBe(401);
    expect((await gql(url, '{ __typename }')).body?.data).toEqual({ __typename: 'Query' });
  });

  it('passes a verified user to the subgraphs, with the request id, and nothing the client sent', async () => {
    const { url } = await router();
    const answer = await gql(url, '{ whoami { kind userId scopes requestId headers } }', {
      ...bearer(accessToken()),
      'x-request-id': 'req-123.abc',
      'x-user-id': 'someone-else',
      [PRINCIPAL_HEADER]: 'forged',
      cookie: 'session=1',
    });
    expect(answer.status).toBe(200);
    expect(answer.headers.get('x-request-id')).toBe('req-123.abc');
    const whoami = answer.body?.data?.whoami;
    expect(whoami).toMatchObject({ kind: 'user', userId: 'user-1', requestId: 'req-123.abc' });
    expect(whoami.scopes).toContain('keys:write');
    expect(whoami.headers).not.toContain('authorization');
    expect(whoami.headers).not.toContain('x-user-id');
    expect(whoami.headers).not.toContain('cookie');
    expect(whoami.headers).toContain(PRINCIPAL_HEADER);
  });

  it('replaces an unsafe request id with a fresh one', async () => {
    const { url } = await router();
    const answer = await gql(url, '{ me { id } }', { 'x-request-id': 'bad id\twith spaces' });
    expect(answer.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('refuses every kind of bad access token with 401 UNAUTHENTICATED', async () => {
    const { url } = await router();
    const b64 = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
    const now = Math.floor(Date.now() / 1000);
    const claims = { sub: 'user-1', iss: 'agent-platform', aud: 'agent-platform-api', iat: now, exp: now + 600 };
    const [header, , signature] = accessToken().split('.');
    const hsHeader = b64({ alg: 'HS256', typ: 'JWT' });
    const tokens: Record<string, string> = {
      tampered: `${header}.${b64({ ...claims, sub: 'admin' })}.${signature}`,
      algNone: `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.`,
      hs256WithPublicKey: `${hsHeader}.${b64(claims)}.${jwt.sign(claims, KEYS.publicKey, { algorithm: 'HS256', noTimestamp: true }).split('.')[2]}`,
      expired: accessToken({ exp: now - 60 }),
      notYetValid: accessToken({}, { notBefore: 3600 }),
      wrongIssuer: accessToken({}, { issuer: 'someone-else' }),
      wrongAudience: accessToken({}, { audience: 'another-api' }),
      signedByAnotherKey: jwt.sign(claims, generateJwtKeyPair().privateKey, { algorithm: 'RS256' }),
      garbage: 'a.b.c',
    };
    for (const [name, token] of Object.entries(tokens)) {
      const answer = await gql(url, '{ me { id } }', bearer(token));
      expect(answer.status, name).toBe(401);
      expect(answer.codes, name).toEqual(['UNAUTHENTICATED']);
    }
    const expired = await gql(url, '{ me { id } }', bearer(tokens.expired));
    expect(expired.body?.errors?.[0].message).toMatch(/expired/);
    const basic = await gql(url, '{ me { id } }', { authorization: 'Basic dXNlcjpwYXNz' });
    expect(basic.status).toBe(401);
  });

  it('resolves API keys from either header, caches them briefly, and stops a revoked key within 2 s', async () => {
    const { url } = await router();
    const secret = `ak_${randomBytes(16).toString('hex')}`;
    apiKeys.set(secret, { userId: 'user-2', apiKeyId: 'key-9', scopes: ['agents:read', 'not-a-scope'] });
    const before = apiKeyLookups;

    const [viaHeader, viaBearer] = await Promise.all([
      gql(url, '{ whoami { kind userId apiKeyId scopes } }', { 'x-api-key': secret }),
      gql(url, '{ whoami { kind userId apiKeyId scopes } }', bearer(secret)),
    ]);
    for (const answer of [viaHeader, viaBearer]) {
      expect(answer.body?.data?.whoami).toEqual({ kind: 'api_key', userId: 'user-2', apiKeyId: 'key-9', scopes: ['agents:read'] });
    }
    // Concurrent requests with one key share one lookup.
    expect(apiKeyLookups - before).toBe(1);

    apiKeys.delete(secret);
    const revokedAt = Date.now();
    let refusedAfter = Infinity;
    while (Date.now() - revokedAt < 3000) {
      const answer = await gql(url, '{ me { id } }', { 'x-api-key': secret });
      if (answer.status === 401 && answer.codes[0] === 'UNAUTHENTICATED') {
        refusedAfter = Date.now() - revokedAt;
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(refusedAfter).toBeLessThan(2000);
    const unknown = await gql(url, '{ me { id } }', { 'x-api-key': 'ak_unknown' });
    expect(unknown.status).toBe(401);
    expect((await gql(url, '{ me { id } }', { 'x-api-key': 'ak_x', ...bearer(accessToken()) })).status).toBe(401);
  });
});

describe('rate limits', () => {
  it('limits anonymous callers per IP with RateLimit-* headers, then 429 RATE_LIMITED with Retry-After', async () => {
    const { url } = await router({ RATE_LIMIT_ANON_PER_MINUTE: '3' });
    const remaining: (string | null)[] = [];
    for (let i = 0; i < 3; i++) {
      const answer = await gql(url, '{ me { id } }');
      expect(answer.status).toBe(200);
      expect(answer.headers.get('ratelimit-limit')).toBe('3');
      remaining.push(answer.headers.get('ratelimit-remaining'));
    }
    expect(remaining).toEqual(['2', '1', '0']);
    const limited = await gql(url, '{ me { id } }');
    expect(limited.status).toBe(429);
    expect(limited.codes).toEqual(['RATE_LIMITED']);
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(Number(limited.headers.get('ratelimit-reset'))).toBeLessThanOrEqual(60);
    expect(limited.headers.get('ratelimit-remaining')).toBe('0');
    // A signed-in caller has a budget of its own.
    expect((await gql(url, '{ me { id } }', bearer(accessToken()))).status).toBe(200);
  });

  it('limits each user separately', async () => {
    const { url } = await router({ RATE_LIMIT_PER_MINUTE: '2' });
    const alice = bearer(accessToken({ sub: 'alice' }));
    expect((await gql(url, '{ me { id } }', alice)).status).toBe(200);
    expect((await gql(url, '{ me { id } }', alice)).status).toBe(200);
    expect((await gql(url, '{ me { id } }', alice)).status).toBe(429);
    expect((await gql(url, '{ me { id } }', bearer(accessToken({ sub: 'bob' })))).status).toBe(200);
  });

  it('limits login, signUp and refreshToken per IP more strictly', async () => {
    const { url } = await router({ RATE_LIMIT_AUTH_PER_MINUTE: '2' });
    const login = 'mutation ($p: String!) { login(email: "a@b.c", password: $p) { accessToken } }';
    const first = await gql(url, login, {}, { p: 'guess-1' });
    expect(first.status).toBe(200);
    expect(first.headers.get('ratelimit-limit')).toBe('2');
    expect((await gql(url, 'mutation { signUp(email: "a@b.c", password: "x") { accessToken } }')).status).toBe(200);
    const limited = await gql(url, login, {}, { p: 'guess-3' });
    expect(limited.status).toBe(429);
    expect(limited.codes).toEqual(['RATE_LIMITED']);
    expect(limited.headers.get('ratelimit-limit')).toBe('2');
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
    // Other operations from the same address are not affected.
    expect((await gql(url, '{ me { id } }')).status).toBe(200);
  });

  it('counts failed credentials against the address', async () => {
    const { url } = await router({ RATE_LIMIT_ANON_PER_MINUTE: '2' });
    expect((await gql(url, '{ me { id } }', bearer('a.b.c'))).status).toBe(401);
    expect((await gql(url, '{ me { id } }', bearer('a.b.c'))).status).toBe(401);
    expect((await gql(url, '{ me { id } }', bearer('a.b.c'))).status).toBe(429);
  });

  it('shares windows between replicas through Redis, under its own prefix', async () => {
    const prefix = `test:router:${randomUUID()}:`;
    const redis = new Redis(REDIS_URL);
    disposers.push(async () => {
      const keys = await redis.keys(`${prefix}*`);
      if (keys.length) await redis.del(...keys);
      await redis.quit();
    });
    const env = { REDIS_URL, RATE_LIMIT_PREFIX: prefix, RATE_LIMIT_ANON_PER_MINUTE: '3' };
    const [a, b] = [await router(env), await router(env)];
    const statuses = [];
    for (const base of [a.url, b.url, a.url, b.url]) statuses.push((await gql(base, '{ me { id } }')).status);
    expect(statuses).toEqual([200, 200, 200, 429]);
    const keys = await redis.keys(`${prefix}*`);
    expect(keys).toEqual([`${prefix}ip:127.0.0.1`]);
    expect(await redis.pttl(keys[0])).toBeGreaterThan(50_000);
  });

  it('lets requests through with a warning when Redis is down', async () => {
    const capture = capturingLogger();
    const { url } = await router({ REDIS_URL: 'redis://127.0.0.1:1', RATE_LIMIT_ANON_PER_MINUTE: '1' }, { log: capture.log });
    for (let i = 0; i < 3; i++) {
      const answer = await gql(url, '{ me { id } }');
      expect(answer.status).toBe(200);
      expect(answer.headers.get('ratelimit-limit')).toBeNull();
    }
    expect(capture.lines.some((line) => line.level === 40 && String(line.msg).includes('rate-limit store unavailable'))).toBe(true);
    const ready = await fetch(`${url}/readyz`);
    expect(ready.status).toBe(503);
    expect(((await ready.json()) as { checks: Record<string, boolean> }).checks.redis).toBe(false);
  });

  it('can be turned off', async () => {
    const { url } = await router({ RATE_LIMIT_ENABLED: 'false', RATE_LIMIT_ANON_PER_MINUTE: '1' });
    for (let i = 0; i < 3; i++) expect((await gql(url, '{ me { id } }')).status).toBe(200);
  });
});

describe('operation limits', () => {
  const nested = (levels: number) => `{ agents(first: 2) { edges { node { ${'parent { '.repeat(levels)}id${' }'.repeat(levels)} } } } }`;

  it('refuses too deep, too aliased, too wide, too costly and too decorated operations with 400 OPERATION_TOO_COMPLEX', async () => {
    const { url } = await router();
    const user = bearer(accessToken());
    const cases: [string, string][] = [
      [nested(11), 'Query depth 15 exceeds the limit of 12.'],
      [`{ ${Array.from({ length: 31 }, (_, i) => `a${i}: __typename`).join(' ')} }`, 'Alias count 31 exceeds the limit of 30.'],
      [`{ ${Array.from({ length: 21 }, () => '__typename').join(' ')} }`, 'Root field count 21 exceeds the limit of 20.'],
      ['{ agents(first: 100) { edges { node { children { children { children { id } } } } } } }', 'Query cost 842301 exceeds the limit of 20000.'],
      [`{ me { ${'id @include(if: true) '.repeat(51)} } }`, 'Directive count 51 exceeds the limit of 50.'],
      [`{ ${'me { id } '.repeat(500)} }`, 'Query token count exceeds the limit of 2000.'],
    ];
    for (const [query, message] of cases) {
      const answer = await gql(url, query, user);
      expect(answer.status, message).toBe(400);
      expect(answer.codes, message).toEqual(['OPERATION_TOO_COMPLEX']);
      expect(answer.body?.errors?.[0].message).toBe(message);
    }
    expect((await gql(url, nested(8), user)).status).toBe(200);
  });

  it('takes its limits from the environment', async () => {
    const { url } = await router({ MAX_QUERY_DEPTH: '3', MAX_ALIASES: '0', MAX_COST: '5' });
    const user = bearer(accessToken());
    expect((await gql(url, '{ agents { edges { node { id } } } }', user)).body?.errors?.[0].message).toBe('Query depth 4 exceeds the limit of 3.');
    expect((await gql(url, '{ x: __typename }', user)).body?.errors?.[0].message).toBe('Alias count 1 exceeds the limit of 0.');
    expect((await gql(url, 'query ($n: Int) { agents(first: $n) { totalCount } }', user, { n: 50 })).body?.errors?.[0].message).toBe(
      'Query cost 51 exceeds the limit of 5.',
    );
    expect((await gql(url, 'query ($n: Int) { agents(first: $n) { totalCount } }', user, { n: 2 })).status).toBe(200);
  });

  it('refuses bodies over the limit with 413, batches and malformed JSON with 400, never a 5xx', async () => {
    const { url } = await router({ MAX_BODY_BYTES: '4096' });
    const big = await post(url, { query: '{ me { id } }', variables: { pad: 'x'.repeat(5000) } });
    expect(big.status).toBe(413);
    expect(big.codes).toEqual(['PAYLOAD_TOO_LARGE']);
    const batch = await post(url, [{ query: '{ me { id } }' }, { query: '{ me { id } }' }]);
    expect(batch.status).toBe(400);
    expect(batch.codes).toEqual(['BAD_REQUEST']);
    expect(batch.body?.errors?.[0].message).toMatch(/batched requests are disabled/i);
    const malformed = await post(url, '{"query": "{ me { id } }"');
    expect(malformed.status).toBe(400);
    expect(malformed.codes).toEqual(['BAD_REQUEST']);
    for (const body of ['null', '"a string"', '{}', '{"query": 42}', '{"query": "{ me { id } }", "variables": "x"}', '{"query": "{"}']) {
      const answer = await post(url, body);
      expect(answer.status, body).toBeGreaterThanOrEqual(400);
      expect(answer.status, body).toBeLessThan(500);
    }
  });

  it('lets Sandbox introspect the whole schema, but not recursively', async () => {
    const { url } = await router();
    const full = await gql(url, getIntrospectionQuery({ descriptions: true, specifiedByUrl: true, directiveIsRepeatable: true, schemaDescription: true, inputValueDeprecation: true }));
    expect(full.status).toBe(200);
    expect(full.body?.data?.__schema.types.length).toBeGreaterThan(10);
    const recursive = await gql(url, '{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }');
    expect(recursive.status).toBe(400);
  });

  it('turns introspection off', async () => {
    const { url } = await router({ INTROSPECTION_ENABLED: 'false' });
    const answer = await gql(url, '{ __schema { queryType { name } } }');
    expect(answer.status).toBe(400);
    expect(answer.codes).toEqual(['GRAPHQL_VALIDATION_FAILED']);
  });
});

describe('CORS and CSRF', () => {
  const preflight = (url: string, origin: string) =>
    fetch(`${url}/graphql`, {
      method: 'OPTIONS',
      headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type, authorization' },
    });

  it('answers preflights for listed origins only, with credentials', async () => {
    const { url } = await router();
    const allowed = await preflight(url, 'http://localhost:5173');
    expect(allowed.status).toBe(204);
    expect(allowed.headers.get('access-control-allow-origin')).toBe('http://localhost:5173');
    expect(allowed.headers.get('access-control-allow-credentials')).toBe('true');
    expect(allowed.headers.get('access-control-allow-headers')).toContain('authorization');
    const refused = await preflight(url, 'https://evil.example');
    expect(refused.headers.get('access-control-allow-origin')).toBeNull();
    expect(refused.headers.get('access-control-allow-credentials')).toBeNull();

    const answer = await gql(url, '{ me { id } }', { origin: 'https://studio.apollographql.com' });
    expect(answer.headers.get('access-control-allow-origin')).toBe('https://studio.apollographql.com');
    expect(answer.headers.get('access-control-expose-headers')).toContain('x-request-id');
    expect(answer.headers.get('vary')).toMatch(/origin/i);
  });

  it('takes the allow-list from CORS_ORIGINS, `*` without credentials', async () => {
    const { url } = await router({ CORS_ORIGINS: 'https://app.example.com, *' });
    expect((await preflight(url, 'https://app.example.com')).headers.get('access-control-allow-credentials')).toBe('true');
    const other = await preflight(url, 'https://other.example');
    expect(other.headers.get('access-control-allow-origin')).toBe('*');
    expect(other.headers.get('access-control-allow-credentials')).toBeNull();
  });

  it('refuses simple (non-preflighted) requests as CSRF', async () => {
    const { url } = await router();
    for (const contentType of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
      const answer = await post(url, '{"query":"{ me { id } }"}', { 'content-type': contentType });
      expect(answer.status, contentType).toBe(400);
      expect(answer.codes, contentType).toEqual(['BAD_REQUEST']);
    }
    const get = await fetch(`${url}/graphql?query=${encodeURIComponent('{ me { id } }')}`);
    expect(get.status).toBe(400);
    const preflighted = await fetch(`${url}/graphql?query=${encodeURIComponent('{ me { id } }')}`, { headers: { 'apollo-require-preflight': 'true' } });
    expect(preflighted.status).toBe(200);
  });
});

describe('errors and health', () => {
  it('masks internal errors and passes public ones', async () => {
    const { url } = await router();
    const boom = await gql(url, '{ boom }', bearer(accessToken()));
    expect(boom.body?.errors).toEqual([{ message: 'Internal server error.', path: ['boom'], extensions: { code: 'INTERNAL_SERVER_ERROR' } }]);
    expect(boom.text).not.toMatch(/hunter2|postgres|stack/);
    const notYours = await gql(url, '{ notYours }', bearer(accessToken()));
    expect(notYours.body?.errors?.[0]).toMatchObject({ message: 'This agent is not yours.', extensions: { code: 'FORBIDDEN' } });
    const invalid = await gql(url, '{ nope }', bearer(accessToken()));
    expect(invalid.status).toBe(400);
    expect(invalid.codes).toEqual(['GRAPHQL_VALIDATION_FAILED']);
  });

  it("passes on a subgraph's own error when it answers with a 4xx status", async () => {
    const { url } = await router();
    const answer = await gql(url, '{ badRequest }', bearer(accessToken()));
    expect(answer.status).toBe(200);
    expect(answer.body?.errors?.[0]).toMatchObject({ message: 'That request makes no sense.', extensions: { code: 'BAD_REQUEST' } });
  });

  it('treats a subgraph refusing its proof (a wrong INTERNAL_SECRET) as an outage, and logs why', async () => {
    const capture = capturingLogger();
    const { url } = await router({ INTERNAL_SECRET: randomBytes(32).toString('hex') }, { log: capture.log });
    const answer = await gql(url, '{ whoami { kind } }', bearer(accessToken()));
    expect(answer.body?.errors?.[0]).toMatchObject({ extensions: { code: 'SERVICE_UNAVAILABLE' } });
    expect(capture.text()).toContain('check INTERNAL_SECRET');
  });

  it('answers SERVICE_UNAVAILABLE for a subgraph that is down, and /readyz says which', async () => {
    const closed = await startSubgraphServer({ name: 'task', port: 0, internalSecret: SECRET, log: silent, typeDefs: parse(TASK_SDL), resolvers: {}, createContext: (base) => base });
    await closed.close();
    const { url } = await router({ TASK_URL: closed.url });
    const answer = await gql(url, '{ taskCount }', bearer(accessToken()));
    expect(answer.status).toBeLessThan(500);
    expect(answer.body?.errors?.[0]).toMatchObject({ message: 'The task service is unavailable; try again shortly.', extensions: { code: 'SERVICE_UNAVAILABLE' } });
    expect((await gql(url, '{ me { id } }', bearer(accessToken()))).body?.data?.me).toEqual({ id: 'user-1' });

    const ready = await fetch(`${url}/readyz`);
    expect(ready.status).toBe(503);
    expect(((await ready.json()) as { checks: Record<string, boolean> }).checks).toEqual({ auth: true, agent: true, task: false, events: true });
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
  });

  it('is ready when every subgraph and Redis answer', async () => {
    const { url } = await router({ REDIS_URL, RATE_LIMIT_PREFIX: `test:router:${randomUUID()}:` });
    const ready = await fetch(`${url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: 'ready', service: 'router', checks: { auth: true, agent: true, task: true, redis: true, events: true } });
    expect(await (await fetch(`${url}/healthz`)).json()).toEqual({ status: 'ok', service: 'router' });
  });
});

describe('metrics', () => {
  /** The value of one series in a scrape, or undefined. */
  const series = (text: string, name: string) => {
    const line = text.split('\n').find((l) => l.startsWith(`${name} `));
    return line === undefined ? undefined : Number(line.slice(name.length + 1));
  };

  it('counts requests by operation type and outcome, times subgraph fetches, and answers /metrics', async () => {
    const { url } = await router();
    await gql(url, '{ whoami { kind } }', bearer(accessToken()));
    await gql(url, '{ whoami { kind } }', bearer(accessToken()));
    await gql(url, '{ notYours }', bearer(accessToken()));
    await gql(url, '{ nope }', bearer(accessToken()));
    await gql(url, '{ whoami { kind } }', bearer('not-a-token'));
    const scrape = await fetch(`${url}/metrics`);
    expect(scrape.status).toBe(200);
    const text = await scrape.text();
    expect(series(text, 'graphql_requests_total{operation_type="query",outcome="ok",service="router"}')).toBe(2);
    expect(series(text, 'graphql_requests_total{operation_type="query",outcome="FORBIDDEN",service="router"}')).toBe(1);
    expect(series(text, 'graphql_requests_total{operation_type="none",outcome="GRAPHQL_VALIDATION_FAILED",service="router"}')).toBe(1);
    expect(series(text, 'graphql_requests_total{operation_type="none",outcome="UNAUTHENTICATED",service="router"}')).toBe(1);
    expect(series(text, 'subgraph_fetch_duration_seconds_count{service="router",subgraph="agent",outcome="ok"}')).toBe(3);
    expect(series(text, 'graphql_ws_sockets{service="router"}')).toBe(0);
    expect(series(text, 'process_resident_memory_bytes')).toBeGreaterThan(0);
    // The scrape itself is not a request of the API.
    expect(text).not.toContain('operation_type="metrics"');
  });

  it('answers /metrics only with METRICS_TOKEN when it is set, and the subgraphs answer theirs', async () => {
    const token = randomBytes(16).toString('hex');
    const { url } = await router({ METRICS_TOKEN: token });
    expect((await fetch(`${url}/metrics`)).status).toBe(401);
    expect((await fetch(`${url}/metrics`, { headers: bearer(token) })).status).toBe(200);
    expect(() => configFor({ METRICS_TOKEN: 'short' })).toThrow(/METRICS_TOKEN must be at least 16 characters/);

    await gql(url, '{ whoami { kind } }', bearer(accessToken()));
    await gql(url, '{ notYours }', bearer(accessToken()));
    const agent = await (await fetch(`${subgraphs.agent.url}/metrics`)).text();
    expect(series(agent, 'graphql_requests_total{outcome="ok",service="agent"}')).toBeGreaterThanOrEqual(1);
    expect(series(agent, 'graphql_requests_total{outcome="FORBIDDEN",service="agent"}')).toBeGreaterThanOrEqual(1);
    // A caller without the router's proof is refused before GraphQL, and counted as such.
    await fetch(`${subgraphs.agent.url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"query":"{ whoami { kind } }"}' });
    const after = await (await fetch(`${subgraphs.agent.url}/metrics`)).text();
    expect(series(after, 'graphql_requests_total{outcome="UNAUTHENTICATED",service="agent"}')).toBeGreaterThanOrEqual(1);
    expect(agent).toMatch(/^graphql_request_duration_seconds_count\{service="agent"\} [1-9]/m);
  });
});

describe('sandbox, logging and shutdown', () => {
  it('serves Apollo Sandbox to browsers unless SANDBOX_ENABLED=false', async () => {
    const on = await router();
    const page = await fetch(`${on.url}/graphql`, { headers: { accept: 'text/html' } });
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/text\/html/);
    expect(await page.text()).toMatch(/sandbox/i);
    const off = await router({ SANDBOX_ENABLED: 'false' });
    const none = await fetch(`${off.url}/graphql`, { headers: { accept: 'text/html' } });
    expect(none.headers.get('content-type') ?? '').not.toMatch(/text\/html/);
  });

  it('writes one line per request with id, operation, principal, status, duration and codes, and no secrets', async () => {
    const capture = capturingLogger();
    const { url } = await router({}, { log: capture.log });
    const token = accessToken({ sub: 'user-log' });
    const apiKey = `ak_${randomBytes(16).toString('hex')}`;
    apiKeys.set(apiKey, { userId: 'user-log', apiKeyId: 'key-log', scopes: [] });
    disposers.push(async () => void apiKeys.delete(apiKey));

    await gql(url, 'query Mine { me { id } }', { ...bearer(token), 'x-request-id': 'log-1' });
    await gql(url, 'mutation SignIn($p: String!) { login(email: "a@b.c", password: $p) { accessToken } }', { 'x-request-id': 'log-2' }, { p: 'hunter2-password' });
    await gql(url, 'query Keyed { me { id } }', { 'x-api-key': apiKey, 'x-request-id': 'log-3' });
    await gql(url, '{ agents { totalCount } }', { 'x-request-id': 'log-4' });
    await new Promise((resolve) => setTimeout(resolve, 50));

    const requests = capture.lines.filter((line) => line.msg === 'request');
    const byId = Object.fromEntries(requests.map((line) => [line.requestId, line]));
    expect(requests).toHaveLength(4);
    expect(byId['log-1']).toMatchObject({ operationName: 'Mine', principal: 'user-log', status: 200, method: 'POST', path: '/graphql' });
    expect(typeof byId['log-1'].durationMs).toBe('number');
    expect(byId['log-1'].errorCodes).toBeUndefined();
    expect(byId['log-2']).toMatchObject({ operationName: 'SignIn', principal: 'anonymous', status: 200, errorCodes: ['UNAUTHENTICATED'] });
    expect(byId['log-3']).toMatchObject({ operationName: 'Keyed', principal: 'key-log' });
    expect(byId['log-4']).toMatchObject({ status: 401, errorCodes: ['UNAUTHENTICATED'] });
    expect(capture.text()).not.toContain(token);
    expect(capture.text()).not.toContain(apiKey);
    expect(capture.text()).not.toContain('hunter2');
  });

  it('finishes in-flight requests on close, then refuses connections', async () => {
    const running = await startRouter(configFor(), { log: silent });
    const inFlight = gql(running.url, '{ slow(ms: 300) }', bearer(accessToken()));
    await new Promise((resolve) => setTimeout(resolve, 100));
    await running.close();
    const answer = await inFlight;
    expect(answer.status).toBe(200);
    expect(answer.body?.data).toEqual({ slow: 'done' });
    await expect(fetch(`${running.url}/healthz`)).rejects.toThrow();
  });

  it('fails to start cleanly when its port is taken', async () => {
    const first = await router();
    await expect(startRouter(configFor({ PORT: String(first.port), REDIS_URL }), { log: silent })).rejects.toThrow(/EADDRINUSE/);
  });

  it('runs as its own process: a bad environment exits 2 with one sentence, SIGTERM exits 0', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'router-main-'));
    disposers.push(async () => rmSync(dir, { recursive: true, force: true }));
    const supergraphPath = join(dir, 'supergraph.graphql');
    writeFileSync(supergraphPath, supergraphSdl);
    const run = (env: Record<string, string>) =>
      spawn(process.execPath, ['--import', 'tsx', new URL('./main.ts', import.meta.url).pathname], {
        env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
    const env = {
      INTERNAL_SECRET: SECRET,
      JWT_PUBLIC_KEY: KEYS.publicKey,
      AUTH_URL: subgraphs.auth.url,
      AGENT_URL: subgraphs.agent.url,
      TASK_URL: subgraphs.task.url,
      SUPERGRAPH_PATH: supergraphPath,
      PORT: '0',
      HOST: '127.0.0.1',
    };

    const bad = run({ ...env, MAX_QUERY_DEPTH: 'deep' });
    let badOutput = '';
    bad.stdout.on('data', (chunk: Buffer) => (badOutput += chunk));
    const [badCode] = await once(bad, 'exit');
    expect(badCode).toBe(2);
    expect(badOutput).toContain('MAX_QUERY_DEPTH must be an integer');

    const good = run(env);
    disposers.push(async () => void good.kill('SIGKILL'));
    let startOutput = '';
    const url = await new Promise<string>((resolve, reject) => {
      good.stdout.on('data', (chunk: Buffer) => {
        startOutput += chunk;
        const ready = startOutput.split('\n').find((line) => line.includes('"router ready"'));
        if (ready) resolve((JSON.parse(ready) as { url: string }).url.replace(/\/graphql$/, ''));
      });
      good.once('exit', (code) => reject(new Error(`router exited with ${code}: ${startOutput}`)));
    });
    // Started on its own without REDIS_URL: it runs, and says once what that costs.
    const warnings = startOutput
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as { level: number; msg: string })
      .filter((line) => line.level === 40 && line.msg.includes('REDIS_URL'));
    expect(warnings.map((line) => line.msg)).toEqual([expect.stringMatching(/^REDIS_URL is unset: rate limits .* taskEvents subscriptions /)]);
    expect((await gql(url, '{ me { id } }', bearer(accessToken()))).body?.data).toEqual({ me: { id: 'user-1' } });
    let tail = '';
    good.stdout.on('data', (chunk: Buffer) => (tail += chunk));
    good.stderr.on('data', (chunk: Buffer) => (tail += chunk));
    good.kill('SIGTERM');
    const [code, signal] = await once(good, 'exit');
    expect({ code, signal, tail }).toMatchObject({ code: 0 });
  });
});
