import { createHmac, randomUUID } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { signUp } from '../support/client.js';
import { startPlatform, type Platform } from '../support/platform.js';
import { ScenarioReport, SHORT } from './support/report.js';
import { HeapProbe, heapGrowth } from './lib/inspector.js';
import { internalsIn, send, type RawAnswer } from './lib/http.js';
import { errorLogs, openDescriptors, settledRssMib } from './lib/proc.js';
import { openAcknowledged, openRawSocket, type RawSocket } from './lib/ws.js';

/**
 * Scenario 8, the hostile input corpus. Every case goes through the router (HTTP or graphql-ws)
 * and must be refused with the code stated in the table below, with no stack trace or internal
 * path in the answer. The full run sends the corpus twice and compares the router's heap after
 * full collections (read through its inspector) after each pass; the short run (`FAULTS_SHORT=1`)
 * sends it once and bounds the growth over that pass. Afterwards the router
 * still answers /healthz and an ordinary query, from the same process.
 */

/** Set once the platform is up and seeded: only then do the figures describe a run. */
let ready = false;
const report = new ScenarioReport('hostile-input');
let platform: Platform;
let routerPid: number;
let wsUrl: string;

type User = Awaited<ReturnType<typeof signUp>>;
let user: User;
/** Someone whose password the brute force guesses. */
let victim: User;
let taskId: string;
let narrowKey: string;
let revokedKey: string;

/** A finding: what came back, in the vocabulary of the table (`400 BAD_REQUEST`, `close 4408`...). */
interface Outcome {
  observed: string;
  /** The HTTP status, for HTTP cases. */
  status?: number;
  /** Everything the client received, checked for internals. */
  text: string;
}

interface PassContext {
  /** Each case of each pass calls from its own address (X-Forwarded-For through TRUST_PROXY=1), so per-IP windows do not mix. */
  ip: string;
}

interface HostileCase {
  name: string;
  /** What the router must answer. */
  expected: string;
  run: (context: PassContext) => Promise<Outcome>;
}

const PASSWORD = 'correct horse battery staple';
const b64 = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
const now = () => Math.floor(Date.now() / 1000);

// ---- how cases send ----

function summary(answer: RawAnswer): string {
  const codes = [...new Set(answer.codes)].sort();
  return `${answer.status}${codes.length > 0 ? ` ${codes.join(',')}` : ''}`;
}

async function http(context: PassContext, body: string | Buffer | undefined, headers: Record<string, string> = {}, init: { method?: string; path?: string } = {}): Promise<Outcome> {
  const answer = await send(`${platform.routerBase}${init.path ?? '/graphql'}${init.method === 'GET' && typeof body === 'string' ? body : ''}`, {
    method: init.method ?? 'POST',
    headers: { 'x-forwarded-for': context.ip, ...headers },
    body: init.method === 'GET' ? undefined : body,
  });
  return { observed: summary(answer), status: answer.status, text: answer.text };
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const JSON_TYPE = { 'content-type': 'application/json' };

/** A JSON POST as the user (or with `headers` instead of their token). */
function gql(context: PassContext, query: string, variables: Record<string, unknown> = {}, headers?: Record<string, string>): Promise<Outcome> {
  return http(context, JSON.stringify({ query, variables }), { ...JSON_TYPE, ...(headers ?? bearer(user.accessToken)) });
}

/** A body with one variable given as raw JSON text (JSON.stringify itself cannot write 10,000 levels). */
function gqlRawVariable(context: PassContext, query: string, name: string, json: string): Promise<Outcome> {
  return http(context, `{"query":${JSON.stringify(query)},"variables":{"${name}":${json}}}`, { ...JSON_TYPE, ...bearer(user.accessToken) });
}

const nestedObjects = (depth: number) => `${'{"a":'.repeat(depth)}"x"${'}'.repeat(depth)}`;
const nestedLists = (depth: number) => `${'['.repeat(depth)}1${']'.repeat(depth)}`;
const CREATE_AGENT_WITH_METADATA = 'mutation ($m: JSON) { createAgent(input: { name: "x", provider: "echo", model: "echo-1", metadata: $m }) { id } }';

/** A token signed with the platform's real key, with `claims` over valid ones. */
function signed(claims: object, options: jwt.SignOptions = {}): string {
  return jwt.sign({ sub: user.user.id, iss: 'agent-platform', aud: 'agent-platform-api', iat: now(), exp: now() + 600, ...claims }, platform.jwt.privateKey, { algorithm: 'RS256', ...options });
}

async function socketFrom(context: PassContext): Promise<RawSocket> {
  return openRawSocket(wsUrl, { headers: { 'x-forwarded-for': context.ip } });
}

/** Opens a socket, lets `act` abuse it, and reports how it closed (or `open` after `waitMs`). */
async function wsCase(context: PassContext, act: (socket: RawSocket) => void | Promise<void>, options: { acknowledged?: boolean; waitMs?: number } = {}): Promise<Outcome> {
  const socket = options.acknowledged ? await openAcknowledged(wsUrl, user.accessToken, { 'x-forwarded-for': context.ip }) : await socketFrom(context);
  try {
    await act(socket);
    const closed = await Promise.race([socket.closed, new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), options.waitMs ?? 5000))]);
    return { observed: closed ? `close ${closed.code}` : 'open', text: socket.text() };
  } finally {
    await socket.close();
  }
}

const init = (authorization?: string) => ({ type: 'connection_init', payload: authorization ? { authorization } : {} });
const subscribe = (id: string, query = 'subscription ($t: ID!) { taskEvents(taskId: $t) { sequence type } }', variables: Record<string, unknown> = { t: taskId }) => ({
  id,
  type: 'subscribe',
  payload: { query, variables },
});

/** The first error message for subscription `id` on an acknowledged socket, as `error CODE` (the socket stays open). */
async function subscriptionError(context: PassContext, message: object | string): Promise<Outcome> {
  const socket = await openAcknowledged(wsUrl, user.accessToken, { 'x-forwarded-for': context.ip });
  try {
    socket.send(message);
    const answer = await socket.next((m) => m.type === 'error' || m.type === 'next');
    const payload = answer.payload as { extensions?: { code?: string } }[];
    const codes = answer.type === 'error' ? [...new Set(payload.map((e) => e.extensions?.code ?? 'NO_CODE'))].join(',') : 'next';
    return { observed: `error ${codes}, socket ${socket.socket.readyState === socket.socket.OPEN ? 'open' : 'closed'}`, text: socket.text() };
  } finally {
    await socket.close();
  }
}

// ---- the corpus: each case, and what the router must answer ----

const CORPUS: HostileCase[] = [
  // Operation bombs: limits checked before planning (OPERATION_TOO_COMPLEX) or by validation.
  { name: 'depth bomb (20 levels)', expected: '400 OPERATION_TOO_COMPLEX', run: (c) => gql(c, `{ agents { edges { node { ${'sessions { edges { node { agent { '.repeat(5)} id ${'} } } }'.repeat(5)} } } } }`) },
  { name: 'alias bomb (500 aliases)', expected: '400 OPERATION_TOO_COMPLEX', run: (c) => gql(c, `{ ${Array.from({ length: 500 }, (_, i) => `a${i}: me { id }`).join(' ')} }`) },
  { name: 'directive bomb (100 directives)', expected: '400 OPERATION_TOO_COMPLEX', run: (c) => gql(c, `{ me { ${Array.from({ length: 100 }, () => 'id @include(if: true)').join(' ')} } }`) },
  { name: 'token bomb (5,000 tokens)', expected: '400 OPERATION_TOO_COMPLEX', run: (c) => gql(c, `{ me { id ${'__typename '.repeat(5000)}} }`) },
  { name: 'cost bomb (100 × 100 × 100 pages)', expected: '400 OPERATION_TOO_COMPLEX', run: (c) => gql(c, `{ agents(first: 100) { edges { node { sessions(first: 100) { edges { node { messages(first: 100) { edges { node { id } } } } } } } } } }`) },
  {
    name: 'fragment fan-out (2^30 fields)',
    expected: '400 OPERATION_TOO_COMPLEX',
    run: (c) => gql(c, `{ me { ...F30 } } fragment F0 on User { id email } ${Array.from({ length: 30 }, (_, i) => `fragment F${i + 1} on User { ...F${i} ...F${i} }`).join(' ')}`),
  },
  { name: 'fragment cycle', expected: '400 GRAPHQL_VALIDATION_FAILED', run: (c) => gql(c, `{ ...A } fragment A on Query { me { id } ...B } fragment B on Query { ...A }`) },
  { name: 'introspection depth bomb', expected: '400 GRAPHQL_VALIDATION_FAILED', run: (c) => gql(c, `{ __schema { types { fields { type { fields { type { fields { type { fields { name } } } } } } } } } }`) },
  { name: 'syntax error', expected: '400 GRAPHQL_PARSE_FAILED', run: (c) => gql(c, `{ me { id `) },
  { name: 'operation name that names no operation', expected: '400 OPERATION_RESOLUTION_FAILURE', run: (c) => http(c, JSON.stringify({ query: '{ me { id } }', operationName: 'x'.repeat(10_000) }), { ...JSON_TYPE, ...bearer(user.accessToken) }) },
  { name: 'two operations without an operation name', expected: '400 OPERATION_RESOLUTION_FAILURE', run: (c) => gql(c, 'query A { me { id } } query B { me { email } }') },
  { name: 'Int overflow in a page size', expected: '400 GRAPHQL_VALIDATION_FAILED', run: (c) => gql(c, '{ agents(first: 99999999999) { totalCount } }') },
  { name: 'negative page size', expected: '200 BAD_USER_INPUT', run: (c) => gql(c, '{ agents(first: -1) { totalCount } }') },
  { name: 'forged cursor', expected: '200 BAD_USER_INPUT', run: (c) => gql(c, '{ agents(after: "bTE6MDAwMDAwMDAtMDAwMC00MDAwLTgwMDAtMDAwMDAwMDAwMDAw") { totalCount } }') },
  { name: 'subscription over HTTP', expected: '400 BAD_REQUEST', run: (c) => gql(c, `subscription ($t: ID!) { taskEvents(taskId: $t) { sequence } }`, { t: taskId }) },
  { name: '_entities through the router', expected: '400 GRAPHQL_VALIDATION_FAILED', run: (c) => gql(c, `query ($r: [_Any!]!) { _entities(representations: $r) { __typename } }`, { r: [{ __typename: 'User', id: victim.user.id }] }) },

  // Bodies.
  { name: 'batched array of operations', expected: '400 BAD_REQUEST', run: (c) => http(c, JSON.stringify([{ query: '{ me { id } }' }, { query: '{ me { id } }' }]), { ...JSON_TYPE, ...bearer(user.accessToken) }) },
  { name: '3 MB body', expected: '413 PAYLOAD_TOO_LARGE', run: (c) => gql(c, '{ me { id } }', { pad: 'x'.repeat(3 * 1024 * 1024) }) },
  { name: '10,000-deep JSON metadata variable', expected: '400 BAD_REQUEST', run: (c) => gqlRawVariable(c, CREATE_AGENT_WITH_METADATA, 'm', nestedObjects(10_000)) },
  { name: '100,000-deep list variable', expected: '400 BAD_REQUEST', run: (c) => gqlRawVariable(c, CREATE_AGENT_WITH_METADATA, 'm', nestedLists(100_000)) },
  { name: '65-deep metadata (within the body limit, over the field limit)', expected: '200 BAD_USER_INPUT', run: (c) => gqlRawVariable(c, CREATE_AGENT_WITH_METADATA, 'm', nestedObjects(65)) },
  { name: '100,000-element list variable (scopes)', expected: '200 BAD_USER_INPUT', run: (c) => gql(c, 'mutation ($s: [String!]) { createApiKey(name: "x", scopes: $s) { secret } }', { s: Array(100_000).fill('x') }) },
  { name: '100,000-element JSON list (metadata)', expected: '200 BAD_USER_INPUT', run: (c) => gql(c, CREATE_AGENT_WITH_METADATA, { m: Array(100_000).fill(1) }) },
  { name: 'NUL character in a metadata string', expected: '200 BAD_USER_INPUT', run: (c) => gql(c, CREATE_AGENT_WITH_METADATA, { m: { note: 'a\u0000b' } }) },
  { name: 'unpaired surrogate in a metadata key', expected: '200 BAD_USER_INPUT', run: (c) => gql(c, CREATE_AGENT_WITH_METADATA, { m: { '\uD800': 1 } }) },
  { name: 'NUL character in a sign-up email', expected: '200 BAD_USER_INPUT', run: (c) => gql(c, 'mutation ($e: String!) { signUp(email: $e, password: "correct horse battery staple") { accessToken } }', { e: 'a\u0000b@example.com' }, {}) },
  { name: 'NUL character in a login email', expected: '200 UNAUTHENTICATED', run: (c) => gql(c, 'mutation ($e: String!) { login(email: $e, password: "whatever") { accessToken } }', { e: `${victim.user.email}\u0000` }, {}) },
  { name: 'NUL character in message content', expected: '200 BAD_USER_INPUT', run: (c) => gql(c, 'mutation ($s: ID!) { appendMessage(sessionId: $s, role: USER, content: "a\\u0000b") { id } }', { s: randomUUID() }) },
  {
    name: 'invalid UTF-8 bytes in a variable',
    expected: '400 BAD_REQUEST',
    run: (c) => http(c, Buffer.concat([Buffer.from('{"query":"{ me { id } }","variables":{"x":"'), Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from('"}}')]), { ...JSON_TYPE, ...bearer(user.accessToken) }),
  },
  {
    name: 'invalid UTF-8 bytes in the query',
    expected: '400 BAD_REQUEST',
    run: (c) => http(c, Buffer.concat([Buffer.from('{"query":"{ me { id '), Buffer.from([0xc0, 0xaf]), Buffer.from(' } }"}')]), { ...JSON_TYPE, ...bearer(user.accessToken) }),
  },
  { name: 'bad JSON', expected: '400 BAD_REQUEST', run: (c) => http(c, '{"query": "{ me { id } }"', { ...JSON_TYPE, ...bearer(user.accessToken) }) },
  { name: 'JSON that is not an object', expected: '400 BAD_REQUEST', run: (c) => http(c, '42', { ...JSON_TYPE, ...bearer(user.accessToken) }) },
  { name: 'query that is not a string', expected: '400 BAD_REQUEST', run: (c) => http(c, '{"query": {"a": 1}}', { ...JSON_TYPE, ...bearer(user.accessToken) }) },
  { name: 'empty body', expected: '400 BAD_REQUEST', run: (c) => http(c, '', { ...JSON_TYPE, ...bearer(user.accessToken) }) },
  { name: 'gzip encoding of garbage', expected: '400 BAD_REQUEST', run: (c) => http(c, 'not gzip', { ...JSON_TYPE, 'content-encoding': 'gzip', ...bearer(user.accessToken) }) },
  { name: 'unsupported charset (latin1)', expected: '400 BAD_REQUEST', run: (c) => http(c, '{"query":"{ me { id } }"}', { 'content-type': 'application/json; charset=latin1', ...bearer(user.accessToken) }) },

  // Cross-site requests: CSRF prevention refuses simple requests before anything runs.
  { name: 'CSRF: text/plain', expected: '400 BAD_REQUEST', run: (c) => http(c, '{"query":"{ me { id } }"}', { 'content-type': 'text/plain', ...bearer(user.accessToken) }) },
  { name: 'CSRF: form-urlencoded', expected: '400 BAD_REQUEST', run: (c) => http(c, 'query=%7B%20me%20%7B%20id%20%7D%20%7D', { 'content-type': 'application/x-www-form-urlencoded', ...bearer(user.accessToken) }) },
  {
    name: 'CSRF: multipart without a preflight header',
    expected: '400 BAD_REQUEST',
    run: (c) => http(c, '--b\r\nContent-Disposition: form-data; name="operations"\r\n\r\n{"query":"{ me { id } }"}\r\n--b--\r\n', { 'content-type': 'multipart/form-data; boundary=b', ...bearer(user.accessToken) }),
  },
  { name: 'CSRF: GET without a preflight header', expected: '400 BAD_REQUEST', run: (c) => http(c, `?query=${encodeURIComponent('{ me { id } }')}`, bearer(user.accessToken), { method: 'GET' }) },
  { name: 'mutation over GET', expected: '405 BAD_REQUEST', run: (c) => http(c, `?query=${encodeURIComponent('mutation { logout(refreshToken: "x") }')}`, { 'apollo-require-preflight': '1' }, { method: 'GET' }) },
  { name: 'PUT', expected: '405 BAD_REQUEST', run: (c) => http(c, '{"query":"{ me { id } }"}', { ...JSON_TYPE, ...bearer(user.accessToken) }, { method: 'PUT' }) },
  { name: 'unknown path', expected: '404 NOT_FOUND', run: (c) => http(c, '{"query":"{ me { id } }"}', JSON_TYPE, { path: '/graphql/../admin' }) },

  // Credentials: a credential that is present but wrong is refused, never downgraded to anonymous.
  { name: 'JWT with alg none', expected: '401 UNAUTHENTICATED', run: (c) => gql(c, '{ me { id } }', {}, bearer(`${b64({ alg: 'none', typ: 'JWT' })}.${b64({ sub: user.user.id, iss: 'agent-platform', aud: 'agent-platform-api', exp: now() + 600 })}.`)) },
  {
    name: 'HS256 signed with the RS public key',
    expected: '401 UNAUTHENTICATED',
    run: (c) => {
      const head = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub: user.user.id, iss: 'agent-platform', aud: 'agent-platform-api', iat: now(), exp: now() + 600 })}`;
      return gql(c, '{ me { id } }', {}, bearer(`${head}.${createHmac('sha256', platform.jwt.publicKey).update(head).digest('base64url')}`));
    },
  },
  {
    name: 'tampered payload (another user)',
    expected: '401 UNAUTHENTICATED',
    run: (c) => {
      const [head, payload, signature] = user.accessToken.split('.');
      return gql(c, '{ me { id } }', {}, bearer(`${head}.${b64({ ...JSON.parse(Buffer.from(payload, 'base64url').toString()), sub: victim.user.id })}.${signature}`));
    },
  },
  { name: 'expired token', expected: '401 UNAUTHENTICATED', run: (c) => gql(c, '{ me { id } }', {}, bearer(signed({ exp: now() - 60 }))) },
  { name: 'not-yet-valid token', expected: '401 UNAUTHENTICATED', run: (c) => gql(c, '{ me { id } }', {}, bearer(signed({ nbf: now() + 3600, exp: now() + 7200 }))) },
  { name: 'wrong issuer', expected: '401 UNAUTHENTICATED', run: (c) => gql(c, '{ me { id } }', {}, bearer(signed({ iss: 'someone-else' }))) },
  { name: 'wrong audience', expected: '401 UNAUTHENTICATED', run: (c) => gql(c, '{ me { id } }', {}, bearer(signed({ aud: 'another-api' }))) },
  { name: 'garbage bearer token', expected: '401 UNAUTHENTICATED', run: (c) => gql(c, '{ me { id } }', {}, bearer('a.b.c')) },
  { name: 'Basic authorization', expected: '401 UNAUTHENTICATED', run: (c) => gql(c, '{ me { id } }', {}, { authorization: `Basic ${Buffer.from('a:b').toString('base64')}` }) },
  { name: 'two credentials at once', expected: '401 UNAUTHENTICATED', run: (c) => gql(c, '{ me { id } }', {}, { ...bearer(user.accessToken), 'x-api-key': narrowKey }) },
  { name: 'unknown API key', expected: '401 UNAUTHENTICATED', run: (c) => gql(c, '{ me { id } }', {}, { 'x-api-key': `ak_${randomUUID().replaceAll('-', '')}` }) },
  { name: 'oversized API key (8 KB bearer)', expected: '401 UNAUTHENTICATED', run: (c) => gql(c, '{ me { id } }', {}, bearer(`ak_${'a'.repeat(8000)}`)) },
  { name: '100 KB Authorization header', expected: '431', run: (c) => gql(c, '{ me { id } }', {}, bearer('a'.repeat(100_000))) },
  { name: 'revoked API key', expected: '401 UNAUTHENTICATED', run: (c) => gql(c, '{ agents { totalCount } }', {}, { 'x-api-key': revokedKey }) },
  { name: 'API key without the scope', expected: '200 FORBIDDEN', run: (c) => gql(c, 'mutation { createAgent(input: { name: "x", provider: "echo", model: "echo-1" }) { id } }', {}, { 'x-api-key': narrowKey }) },
  { name: 'spoofed identity headers, anonymous', expected: '401 UNAUTHENTICATED', run: (c) => gql(c, '{ agents { totalCount } }', {}, { 'x-principal-proof': 'forged', 'x-user-id': user.user.id }) },
  {
    name: 'login brute force',
    expected: '200 UNAUTHENTICATED until 429 RATE_LIMITED with Retry-After',
    run: async (c) => {
      let text = '';
      for (let attempt = 1; attempt <= 40; attempt++) {
        const answer = await send(platform.url, {
          method: 'POST',
          headers: { ...JSON_TYPE, 'x-forwarded-for': c.ip },
          body: JSON.stringify({ query: 'mutation ($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }', variables: { e: victim.user.email, p: `guess-${attempt}` } }),
        });
        text += answer.text;
        if (answer.status === 429) {
          const retryAfter = Number(answer.headers.get('retry-after'));
          return { observed: `200 UNAUTHENTICATED until ${summary(answer)}${retryAfter > 0 ? ' with Retry-After' : ' without Retry-After'}`, text };
        }
        if (summary(answer) !== '200 UNAUTHENTICATED') return { observed: `attempt ${attempt}: ${summary(answer)}`, text };
      }
      return { observed: '40 attempts, never limited', text };
    },
  },

  // graphql-ws abuse.
  { name: 'ws: no connection_init', expected: 'close 4408', run: (c) => wsCase(c, () => undefined) },
  { name: 'ws: subscribe before connection_init', expected: 'close 4401', run: (c) => wsCase(c, (s) => s.send(subscribe('1'))) },
  { name: 'ws: second connection_init', expected: 'close 4429', run: (c) => wsCase(c, (s) => s.send(init(`Bearer ${user.accessToken}`)), { acknowledged: true }) },
  { name: 'ws: duplicate subscription id', expected: 'close 4409', run: (c) => wsCase(c, (s) => (s.send(subscribe('dup')), s.send(subscribe('dup'))), { acknowledged: true }) },
  { name: 'ws: oversized message (70 KB)', expected: 'close 1009', run: (c) => wsCase(c, (s) => s.send({ type: 'ping', payload: { pad: 'x'.repeat(70_000) } }), { acknowledged: true }) },
  { name: 'ws: garbage text frame', expected: 'close 4400', run: (c) => wsCase(c, (s) => s.send('{{{ not json'), { acknowledged: true }) },
  { name: 'ws: binary frame', expected: 'close 4400', run: (c) => wsCase(c, (s) => s.send(Buffer.from([0, 1, 2, 0xff])), { acknowledged: true }) },
  { name: 'ws: unknown message type', expected: 'close 4400', run: (c) => wsCase(c, (s) => s.send({ type: 'take_over' }), { acknowledged: true }) },
  { name: 'ws: no credentials', expected: 'close 4401', run: (c) => wsCase(c, (s) => s.send(init())) },
  { name: 'ws: invalid token', expected: 'close 4401', run: (c) => wsCase(c, (s) => s.send(init('Bearer a.b.c'))) },
  { name: 'ws: expired token', expected: 'close 4401', run: (c) => wsCase(c, (s) => s.send(init(`Bearer ${signed({ exp: now() - 60 })}`))) },
  { name: 'ws: alg none token', expected: 'close 4401', run: (c) => wsCase(c, (s) => s.send(init(`Bearer ${b64({ alg: 'none' })}.${b64({ sub: user.user.id, exp: now() + 60 })}.`))) },
  { name: 'ws: revoked API key', expected: 'close 4401', run: (c) => wsCase(c, (s) => s.send(init(`Bearer ${revokedKey}`))) },
  { name: 'ws: oversized API key', expected: 'close 4401', run: (c) => wsCase(c, (s) => s.send(init(`Bearer ak_${'a'.repeat(8000)}`))) },
  { name: 'ws: authorization that is not a string', expected: 'close 4401', run: (c) => wsCase(c, (s) => s.send({ type: 'connection_init', payload: { authorization: 42 } })) },
  { name: 'ws: connection_init payload that is not an object', expected: 'close 4400', run: (c) => wsCase(c, (s) => s.send({ type: 'connection_init', payload: [1, 2] })) },
  {
    name: 'ws: wrong subprotocol',
    expected: 'close 4406',
    run: async (c) => {
      const socket = await openRawSocket(wsUrl, { protocol: null, headers: { 'x-forwarded-for': c.ip } });
      const closed = await socket.closed;
      return { observed: `close ${closed.code}`, text: socket.text() };
    },
  },
  { name: 'ws: depth bomb subscription', expected: 'error OPERATION_TOO_COMPLEX, socket open', run: (c) => subscriptionError(c, subscribe('deep', `subscription ($t: ID!) { taskEvents(taskId: $t) { task { agent { tasks { edges { node { agent { tasks { edges { node { agent { tasks { edges { node { id } } } } } } } } } } } } } } }`)) },
  {
    name: 'ws: 10,000-deep variable in a subscribe message',
    expected: 'error BAD_USER_INPUT, socket open',
    run: (c) => subscriptionError(c, `{"id":"deep","type":"subscribe","payload":{"query":"subscription ($t: ID!) { taskEvents(taskId: $t) { sequence } }","variables":{"t":${nestedObjects(10_000)}}}}`),
  },
  { name: "ws: another user's task", expected: 'error NOT_FOUND, socket open', run: (c) => subscriptionError(c, subscribe('theirs', undefined, { t: randomUUID() })) },
  { name: 'ws: a query instead of a subscription', expected: 'error BAD_REQUEST, socket open', run: (c) => subscriptionError(c, subscribe('query', '{ me { id } }', {})) },
  { name: 'ws: two root fields', expected: 'error GRAPHQL_VALIDATION_FAILED, socket open', run: (c) => subscriptionError(c, subscribe('two', 'subscription ($t: ID!) { a: taskEvents(taskId: $t) { sequence } b: taskEvents(taskId: $t) { sequence } }')) },
  { name: 'ws: negative afterSequence', expected: 'error BAD_USER_INPUT, socket open', run: (c) => subscriptionError(c, subscribe('negative', 'subscription ($t: ID!) { taskEvents(taskId: $t, afterSequence: -5) { sequence } }')) },
  {
    name: 'ws: ping flood (2,000 pings)',
    expected: '2000 pongs, socket open',
    run: async (c) => {
      const socket = await openAcknowledged(wsUrl, user.accessToken, { 'x-forwarded-for': c.ip });
      try {
        for (let i = 0; i < 2000; i++) socket.send({ type: 'ping' });
        const pongs = () => socket.messages.filter((m) => (m as { type?: string }).type === 'pong').length;
        const deadline = Date.now() + 10_000;
        while (pongs() < 2000 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
        return { observed: `${pongs()} pongs, socket ${socket.socket.readyState === socket.socket.OPEN ? 'open' : 'closed'}`, text: socket.text() };
      } finally {
        await socket.close();
      }
    },
  },
  {
    name: 'ws: 1,000 subscriptions on one socket',
    expected: '100 running, 900 refused with RATE_LIMITED, socket open',
    run: async (c) => {
      const socket = await openAcknowledged(wsUrl, user.accessToken, { 'x-forwarded-for': c.ip });
      try {
        for (let i = 0; i < 1000; i++) socket.send(subscribe(`s${i}`));
        // Every refusal arrives as an error for its id; the running ones have sent their QUEUED event.
        const deadline = Date.now() + 20_000;
        const count = (type: string) => new Set(socket.messages.filter((m) => (m as { type?: string }).type === type).map((m) => (m as { id: string }).id)).size;
        while ((count('error') + count('next') < 1000 || socket.messages.length < 1000) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
        const refused = socket.messages.filter((m) => (m as { type?: string }).type === 'error') as { payload: { extensions?: { code?: string } }[] }[];
        const codes = [...new Set(refused.flatMap((m) => m.payload.map((e) => e.extensions?.code)))].join(',');
        const open = socket.socket.readyState === socket.socket.OPEN;
        for (let i = 0; i < 1000; i++) socket.send({ id: `s${i}`, type: 'complete' });
        return { observed: `${count('next')} running, ${refused.length} refused with ${codes}, socket ${open ? 'open' : 'closed'}`, text: socket.text() };
      } finally {
        await socket.close();
      }
    },
  },
  {
    name: 'ws: connection flood (500 sockets)',
    expected: '500 acknowledged, router sockets back to where they were',
    run: async (c) => {
      const before = openDescriptors(routerPid).sockets;
      const sockets = await Promise.all(
        Array.from({ length: 500 }, async () => {
          const socket = await socketFrom(c);
          socket.send(init(`Bearer ${user.accessToken}`));
          return socket;
        }),
      );
      const deadline = Date.now() + 20_000;
      const acknowledged = () => sockets.filter((s) => s.messages.some((m) => (m as { type?: string }).type === 'connection_ack')).length;
      while (acknowledged() < 500 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      const acks = acknowledged();
      report.max('floodRouterSocketsPeak', openDescriptors(routerPid).sockets);
      await Promise.all(sockets.map((s) => s.close()));
      let after = openDescriptors(routerPid).sockets;
      for (let i = 0; i < 50 && after > before + 2; i++) {
        await new Promise((r) => setTimeout(r, 100));
        after = openDescriptors(routerPid).sockets;
      }
      return { observed: `${acks} acknowledged, router sockets ${after <= before + 2 ? 'back to where they were' : `at ${after}, were ${before}`}`, text: sockets.map((s) => s.text()).join('') };
    },
  },
  {
    name: 'ws: anonymous connection flood (300 sockets, no connection_init)',
    expected: '300 × close 4408',
    run: async (c) => {
      const sockets = await Promise.all(Array.from({ length: 300 }, () => socketFrom(c)));
      const closes = await Promise.all(sockets.map((s) => s.closed));
      const codes = [...new Set(closes.map((x) => x.code))];
      return { observed: codes.length === 1 ? `${closes.length} × close ${codes[0]}` : `closes ${codes.join(',')}`, text: sockets.map((s) => s.text()).join('') };
    },
  },
];

// ---- the scenario ----

const mismatches: string[] = [];
const internals: string[] = [];
let http5xx = 0;

beforeAll(async () => {
  platform = await startPlatform('faults_hostile', {
    env: {
      // Each case calls from its own address; per-IP limits (anonymous, sign-in) stay at their defaults.
      TRUST_PROXY: '1',
      // Per user: the flood and the 1,000 subscriptions are about per-socket limits, not this one.
      RATE_LIMIT_PER_MINUTE: '100000',
    },
    // The router's inspector on a free port: its heap after full collections is the leak measure.
    routerEnv: { NODE_OPTIONS: '--inspect=127.0.0.1:0' },
  });
  const router = platform.processes.find((p) => p.name.startsWith('router'))!;
  routerPid = router.child.pid!;
  heap = await HeapProbe.connect(router.output);
  wsUrl = platform.url.replace(/^http/, 'ws');
  const suffix = randomUUID().slice(0, 8);
  user = await signUp(platform.url, `hostile-${suffix}@example.com`, PASSWORD);
  victim = await signUp(platform.url, `victim-${suffix}@example.com`, PASSWORD);
  const agentId = (await user.client.data(`mutation { createAgent(input: { name: "a", provider: "echo", model: "echo-1" }) { id } }`)).createAgent.id;
  // No worker runs in this platform: the task stays QUEUED and its subscriptions stay open.
  taskId = (await user.client.data(`mutation ($a: ID!) { runTask(input: { agentId: $a, input: "hello" }) { id } }`, { a: agentId })).runTask.id;
  narrowKey = (await user.client.data(`mutation { createApiKey(name: "narrow", scopes: ["agents:read"]) { secret } }`)).createApiKey.secret;
  const revoked = (await user.client.data(`mutation { createApiKey(name: "revoked") { secret apiKey { id } } }`)).createApiKey;
  await user.client.data(`mutation ($id: ID!) { revokeApiKey(id: $id) { id } }`, { id: revoked.apiKey.id });
  revokedKey = revoked.secret;
  // A revoked key stops within two seconds (the router caches answers for at most one).
  await new Promise((r) => setTimeout(r, 2100));
  report.note('Platform: the 4 subgraphs and the router as separate processes (no worker: tasks stay QUEUED) with TRUST_PROXY=1, each case from its own X-Forwarded-For address.');
  ready = true;
}, 180_000);

afterEach((context) => {
  if (context.task.result?.state === 'fail') report.count('failedTests');
});

afterAll(async () => {
  heap?.close();
  await platform?.stop();
  report.set('mismatches', mismatches.length);
  report.set('internalsShown', internals.length);
  report.set('http5xx', http5xx);
  // A setup that failed leaves figures that say nothing: marked as stopped early instead.
  await (ready ? report.write() : report.writeIfStopped());
});

async function runPass(pass: number): Promise<void> {
  for (const [index, hostile] of CORPUS.entries()) {
    const context = { ip: `10.${pass}.${index >> 8}.${index & 255}` };
    let outcome: Outcome;
    try {
      outcome = await hostile.run(context);
    } catch (error) {
      outcome = { observed: `client error: ${(error as Error).message}`, text: '' };
    }
    report.count('hostileInputs');
    if ((outcome.status ?? 0) >= 500) http5xx += 1;
    if (outcome.observed !== hostile.expected) mismatches.push(`pass ${pass}, ${hostile.name}: expected "${hostile.expected}", got "${outcome.observed}" ${outcome.text.slice(0, 200)}`);
    const shown = internalsIn(outcome.text);
    if (shown) internals.push(`pass ${pass}, ${hostile.name}: ${shown}`);
  }
}

async function routerAnswers(): Promise<void> {
  expect((await fetch(`${platform.routerBase}/healthz`)).status).toBe(200);
  expect((await user.client.data('{ me { id } }')).me.id).toBe(user.user.id);
  const router = platform.processes.find((p) => p.name.startsWith('router'))!;
  expect(router.child.pid).toBe(routerPid);
  expect(router.child.exitCode).toBeNull();
}

/** Passes over the corpus: `HOSTILE_PASSES`, else two (one in the short form). Memory is compared between the first and the last. */
const PASSES = Number(process.env.HOSTILE_PASSES ?? (SHORT ? 1 : 2));
/** Router heap in use after full collections (MiB), before the first pass and after each. */
const heapAfterPasses: number[] = [];
/** Settled router RSS (MiB) right after those collections, before the first pass and after each. */
const rssAfterPasses: number[] = [];
let heap: HeapProbe;
/** Most the heap may grow over the first pass, which also warms the router's bounded caches up. */
const HEAP_WARMUP_MIB = 20;
/** Most the heap may grow from the first pass to the last: repeated work, so a leak shows and warm-up does not. */
const HEAP_LEAK_MIB = 5;

/**
 * HOSTILE_HEAP_DIFF=1: heap snapshots after the first and the last pass, and the kinds of object
 * that grew in the failure message; HOSTILE_HEAP_SNAPSHOT=<file> also saves the last one (open it
 * in DevTools' Memory tab to see what retains them). Off by default: a snapshot swells the RSS.
 */
const HEAP_DIFF = process.env.HOSTILE_HEAP_DIFF === '1' || Boolean(process.env.HOSTILE_HEAP_SNAPSHOT);
let kindsAfterPass1: Map<string, { count: number; bytes: number }> | undefined;
let grewBy = ['(run with HOSTILE_HEAP_DIFF=1 to see which kinds of object grew)'];

async function measureMemory(label: string): Promise<void> {
  heapAfterPasses.push(await heap.heapAfterGcMib());
  rssAfterPasses.push(await settledRssMib(routerPid));
  if (HEAP_DIFF && label === 'AfterPass1' && PASSES > 1) kindsAfterPass1 = await heap.heapByKind();
  if (HEAP_DIFF && label === `AfterPass${PASSES}` && kindsAfterPass1) grewBy = heapGrowth(kindsAfterPass1, await heap.heapByKind(process.env.HOSTILE_HEAP_SNAPSHOT));
  report.set(`routerHeap${label}MiB`, heapAfterPasses.at(-1)!);
  report.set(`routerRss${label}MiB`, rssAfterPasses.at(-1)!);
}

describe('hostile input corpus', () => {
  it(`refuses every case with its code and shows no internals (${PASSES === 1 ? 'one pass' : `${PASSES} passes`})`, async () => {
    report.set('casesPerPass', CORPUS.length);
    report.set('passes', PASSES);
    await measureMemory('Start');
    for (let pass = 1; pass <= PASSES; pass++) {
      await runPass(pass);
      await measureMemory(`AfterPass${pass}`);
      await routerAnswers();
    }
    const at = (pass: number) => (pass === 0 ? 'at start' : `after pass ${pass}`);
    report.note(`Router heap after full collections (MiB, read through its inspector): ${heapAfterPasses.map((mib, pass) => `${mib} ${at(pass)}`).join(', ')}.`);
    report.note(`Router RSS (settled, MiB, after the collections): ${rssAfterPasses.map((mib, pass) => `${mib} ${at(pass)}`).join(', ')}.`);
    report.set('routerSocketsAtEnd', openDescriptors(routerPid).sockets);
    expect(mismatches, `${mismatches.join('\n')}\n${errorLogs(platform.processes)}`).toEqual([]);
    expect(internals, internals.join('\n')).toEqual([]);
    expect(http5xx).toBe(0);
  });

  it("keeps the router's memory flat across passes", () => {
    // The heap a process still holds after full collections: what a leak grows. A pass sends a
    // 3 MB body several times over, floods of sockets and 1,000 subscriptions, so a leak of any of
    // them is several MiB per pass; caches the router keeps (query plans, parsed operations, API
    // key answers) are bounded and filled by the first pass.
    if (PASSES === 1) {
      const [start, after] = heapAfterPasses;
      report.set('routerHeapGrowthMiB', Math.round((after - start) * 10) / 10);
      expect(after - start).toBeLessThan(HEAP_WARMUP_MIB);
      return;
    }
    const first = heapAfterPasses[1];
    const last = heapAfterPasses[PASSES];
    report.set('routerHeapGrowthAfterPass1MiB', Math.round((last - first) * 10) / 10);
    // Later passes repeat everything the first did: a leak grows with them, warm-up does not.
    expect(last - first, `what grew after pass 1:\n${grewBy.join('\n')}`).toBeLessThan(HEAP_LEAK_MIB);
    // And the resident memory, read after those collections, with room for the allocator's noise.
    const rssGrowth = rssAfterPasses[PASSES] - rssAfterPasses[1];
    report.set('routerRssGrowthAfterPass1MiB', Math.round(rssGrowth * 10) / 10);
    expect(rssGrowth).toBeLessThan(Math.max(25, rssAfterPasses[1] * 0.1));
  });

  it('still answers /healthz and an ordinary query, from the same process', async () => {
    await routerAnswers();
    report.note(`${CORPUS.length} cases per pass, each refused with its stated code; no stack trace, dependency or repository path in any answer.`);
  });
});
