import { randomBytes } from 'node:crypto';
import { parse } from 'graphql';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PRINCIPAL_HEADER, signPrincipalProof } from './principal.js';
import { startSubgraphServer, type BaseContext, type RunningServer } from './subgraph-server.js';

/** A subgraph on a free port, called directly the way an attacker who reached its port would. */
const SECRET = randomBytes(32).toString('hex');
const SDL = 'extend schema @link(url: "https://specs.apollo.dev/federation/v2.7", import: ["@key"]) type Query { whoami: String }';
let server: RunningServer;

beforeAll(async () => {
  server = await startSubgraphServer<BaseContext>({
    name: 'probe',
    port: 0,
    internalSecret: SECRET,
    log: pino({ level: 'silent' }),
    typeDefs: parse(SDL),
    resolvers: { Query: { whoami: (_: unknown, __: unknown, ctx: BaseContext) => ctx.principal.kind } },
    createContext: (base) => base,
  });
});
afterAll(() => server?.close());

async function post(body: string, headers: Record<string, string> = {}, path = '/graphql') {
  const response = await fetch(`${server.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
  const text = await response.text();
  const json = JSON.parse(text) as { data?: unknown; errors?: { message: string; extensions?: { code?: string } }[] };
  return { status: response.status, text, codes: (json.errors ?? []).map((error) => error.extensions?.code), data: json.data };
}

const proof = () => ({ [PRINCIPAL_HEADER]: signPrincipalProof({ kind: 'user', userId: 'u1', scopes: [] }, SECRET) });
const malformed = '{"query": "{ whoami }"';
const huge = JSON.stringify({ query: '{ whoami }', variables: { pad: 'x'.repeat(3 * 1024 * 1024) } });

describe('subgraph server door', () => {
  it('answers UNAUTHENTICATED in JSON to callers without the router proof, whatever their body', async () => {
    for (const body of [JSON.stringify({ query: '{ whoami }' }), malformed, huge]) {
      const answer = await post(body);
      expect(answer.status).toBe(401);
      expect(answer.codes).toEqual(['UNAUTHENTICATED']);
      expect(answer.text).not.toMatch(/node_modules|\bat \S+ \(/);
    }
    expect((await post(JSON.stringify({ query: '{ whoami }' }), { [PRINCIPAL_HEADER]: 'forged' })).codes).toEqual(['UNAUTHENTICATED']);
  });

  it('refuses bad bodies from the router with a code and no stack trace, and unknown paths with NOT_FOUND', async () => {
    const cases: [string, number, string][] = [
      [malformed, 400, 'BAD_REQUEST'],
      [huge, 413, 'PAYLOAD_TOO_LARGE'],
    ];
    for (const [body, status, code] of cases) {
      const answer = await post(body, proof());
      expect(answer.status, code).toBe(status);
      expect(answer.codes, code).toEqual([code]);
      expect(answer.text, code).not.toMatch(/node_modules|\bat \S+ \(|SyntaxError|PayloadTooLargeError/);
    }
    const elsewhere = await post('{}', {}, '/nowhere');
    expect(elsewhere.status).toBe(404);
    expect(elsewhere.codes).toEqual(['NOT_FOUND']);
    expect((await post(JSON.stringify({ query: '{ whoami }' }), proof())).data).toEqual({ whoami: 'user' });
  });

  it('answers its probes without a proof, to GET and to HEAD (which some load balancers send)', async () => {
    const health = await fetch(`${server.url}/healthz`);
    expect(await health.json()).toEqual({ status: 'ok', service: 'probe' });
    for (const path of ['/healthz', '/readyz']) {
      const head = await fetch(`${server.url}${path}`, { method: 'HEAD' });
      expect(head.status, path).toBe(200);
      expect(await head.text(), path).toBe('');
    }
  });
});
