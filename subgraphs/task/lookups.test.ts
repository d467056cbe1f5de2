import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Principal } from '../../lib/principal.js';
import { serviceLookups, type LookupCaller } from './lookups.js';

/** A fake agent service: answers `_entities` for the ids it knows, records each request, fails for one caller. */
let server: Server;
let url: string;
const requests: { proof: string; ids: string[] }[] = [];
const known = new Set<string>();

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => (body += chunk));
    req.on('end', () => {
      const proof = String(req.headers['x-principal-proof']);
      const ids = (JSON.parse(body).variables.r as { id: string }[]).map((r) => r.id);
      requests.push({ proof, ids });
      if (proof === 'broken') {
        res.writeHead(500).end('{}');
        return;
      }
      const entities = ids.map((id) => (known.has(id) ? { id, provider: 'echo', model: 'echo-1', systemPrompt: null, temperature: null, maxTokens: null, status: 'ACTIVE', deletedAt: null } : null));
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ data: { _entities: entities } }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

const user = (userId: string, scopes: Principal['scopes'] = ['agents:read']): Principal => ({ kind: 'user', userId, scopes }) as Principal;
const caller = (principal: Principal, proof = `proof-${randomUUID()}`): LookupCaller => ({ principal, proof, requestId: randomUUID() });
const lookups = (c: LookupCaller) => serviceLookups({ agentUrl: url, memoryUrl: url }, c);

describe('agent lookups of concurrent requests', () => {
  it('share one request per principal, each answered with its own agent', async () => {
    requests.length = 0;
    const [a, b, missing] = [randomUUID(), randomUUID(), randomUUID()];
    known.add(a).add(b);
    const alice = user(randomUUID());
    const ids = [a, b, a, missing, b, a];
    const answers = await Promise.all(ids.map((id) => lookups(caller(alice)).agent(id)));
    expect(answers.map((agent) => agent?.id ?? null)).toEqual([a, b, a, null, b, a]);
    expect(requests).toHaveLength(1);
    expect(requests[0].ids.sort()).toEqual([a, b, missing].sort());
  });

  it('never merge different principals, even the same user with other scopes', async () => {
    requests.length = 0;
    const id = randomUUID();
    known.add(id);
    const userId = randomUUID();
    const proofs = ['p-alice', 'p-alice-key', 'p-bob'];
    const callers = [caller(user(userId), proofs[0]), caller(user(userId, ['agents:read', 'tasks:write']), proofs[1]), caller(user(randomUUID()), proofs[2])];
    await Promise.all(callers.map((c) => lookups(c).agent(id)));
    expect(requests.map((r) => r.proof).sort()).toEqual([...proofs].sort());
  });

  it("fail only the requests of the caller whose lookup failed", async () => {
    const id = randomUUID();
    known.add(id);
    const [ok, broken] = await Promise.allSettled([lookups(caller(user(randomUUID()))).agent(id), lookups(caller(user(randomUUID()), 'broken')).agent(id)]);
    expect(ok).toMatchObject({ status: 'fulfilled', value: { id } });
    expect(broken).toMatchObject({ status: 'rejected', reason: { extensions: { code: 'SERVICE_UNAVAILABLE' } } });
  });
});
