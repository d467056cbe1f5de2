import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, TEST_INTERNAL_SECRET } from '../../tests/support/database.js';
import { asAnonymous, asApiKey, asUser, errorCodes, postGraphQL } from '../../tests/support/graphql.js';
import { startAgentSubgraph } from './server.js';

const alice = randomUUID();
const bob = randomUUID();
let url: string;
const disposers: (() => Promise<void>)[] = [];

beforeAll(async () => {
  const db = await createTestDatabase('agent');
  disposers.push(db.drop);
  const server = await startAgentSubgraph({ port: 0, databaseUrl: db.url, internalSecret: TEST_INTERNAL_SECRET, logLevel: 'silent' });
  disposers.unshift(server.close);
  url = `${server.url}/graphql`;
});
afterAll(async () => {
  for (const dispose of disposers) await dispose();
});

const CREATE = `mutation ($input: CreateAgentInput!) { createAgent(input: $input) { id name provider model status metadata temperature owner { id } createdAt updatedAt } }`;
const create = (owner: string, input: Record<string, unknown>) => postGraphQL(url, CREATE, { input }, asUser(owner));

describe('agent subgraph', () => {
  it('creates, reads, updates and deletes an agent of its owner', async () => {
    const created = await create(alice, { name: ' Helper ', provider: 'echo', model: 'echo-1', metadata: { team: ['a'] }, temperature: 0.5 });
    expect(created.errors).toBeUndefined();
    const agent = created.data.createAgent;
    expect(agent).toMatchObject({ name: 'Helper', provider: 'echo', status: 'ACTIVE', metadata: { team: ['a'] }, owner: { id: alice } });

    const updated = await postGraphQL(url, `mutation ($id: ID!) { updateAgent(id: $id, input: { status: PAUSED, description: "d", temperature: null }) { status description temperature name } }`, { id: agent.id }, asUser(alice));
    expect(updated.data.updateAgent).toEqual({ status: 'PAUSED', description: 'd', temperature: null, name: 'Helper' });

    const read = await postGraphQL(url, `query ($id: ID!) { agent(id: $id) { id status } }`, { id: agent.id }, asUser(alice));
    expect(read.data.agent).toEqual({ id: agent.id, status: 'PAUSED' });

    const deleted = await postGraphQL(url, `mutation ($id: ID!) { deleteAgent(id: $id) }`, { id: agent.id }, asUser(alice));
    expect(deleted.data.deleteAgent).toBe(true);
    const again = await postGraphQL(url, `mutation ($id: ID!) { deleteAgent(id: $id) }`, { id: agent.id }, asUser(alice));
    expect(again.data.deleteAgent).toBe(false);
    const gone = await postGraphQL(url, `query ($id: ID!) { agent(id: $id) { id } }`, { id: agent.id }, asUser(alice));
    expect(gone.data.agent).toBeNull();

    // History keeps its agent: the owner still resolves a deleted agent by reference.
    const reference = await postGraphQL(url, `query ($r: [_Any!]!) { _entities(representations: $r) { ... on Agent { id name } } }`, { r: [{ __typename: 'Agent', id: agent.id }] }, asUser(alice));
    expect(reference.data._entities).toEqual([{ id: agent.id, name: 'Helper' }]);
  });

  it('refuses bad input with BAD_USER_INPUT naming the field', async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ name: '', provider: 'echo', model: 'm' }, 'name'],
      [{ name: 'x'.repeat(201), provider: 'echo', model: 'm' }, 'name'],
      [{ name: 'n', provider: 'skynet', model: 'm' }, 'provider'],
      [{ name: 'n', provider: 'echo', model: ' ' }, 'model'],
      [{ name: 'n', provider: 'echo', model: 'm', temperature: 3 }, 'temperature'],
      [{ name: 'n', provider: 'echo', model: 'm', maxTokens: 0 }, 'maxTokens'],
      [{ name: 'n', provider: 'echo', model: 'm', metadata: { big: 'x'.repeat(70_000) } }, 'metadata'],
    ];
    for (const [input, field] of cases) {
      const response = await create(alice, input);
      expect(errorCodes(response), JSON.stringify(input).slice(0, 80)).toEqual(['BAD_USER_INPUT']);
      expect(response.errors![0].extensions!.field).toBe(field);
    }
    const created = await create(alice, { name: 'n', provider: 'echo', model: 'm' });
    const nulled = await postGraphQL(url, `mutation ($id: ID!) { updateAgent(id: $id, input: { provider: null }) { id } }`, { id: created.data.createAgent.id }, asUser(alice));
    expect(errorCodes(nulled)).toEqual(['BAD_USER_INPUT']);
  });

  it('pages through agents with stable cursors and filters by status', async () => {
    const owner = randomUUID();
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await create(owner, { name: `a${i}`, provider: 'echo', model: 'm' })).data.createAgent.id);
    await postGraphQL(url, `mutation ($id: ID!) { updateAgent(id: $id, input: { status: ARCHIVED }) { id } }`, { id: ids[1] }, asUser(owner));

    const seen: string[] = [];
    let after: string | null = null;
    for (;;) {
      const page: any = await postGraphQL(url, `query ($after: String) { agents(first: 2, after: $after) { edges { node { id } } pageInfo { hasNextPage endCursor } totalCount } }`, { after }, asUser(owner));
      expect(page.data.agents.totalCount).toBe(5);
      seen.push(...page.data.agents.edges.map((e: any) => e.node.id));
      if (!page.data.agents.pageInfo.hasNextPage) break;
      after = page.data.agents.pageInfo.endCursor;
    }
    expect(seen).toEqual(ids);

    const archived = await postGraphQL(url, `{ agents(status: ARCHIVED) { totalCount edges { node { id } } } }`, {}, asUser(owner));
    expect(archived.data.agents).toEqual({ totalCount: 1, edges: [{ node: { id: ids[1] } }] });

    const tooMany = await postGraphQL(url, `{ agents(first: 1000) { totalCount } }`, {}, asUser(owner));
    expect(errorCodes(tooMany)).toEqual(['BAD_USER_INPUT']);
    const garbage = await postGraphQL(url, `{ agents(after: "not-a-cursor") { totalCount } }`, {}, asUser(owner));
    expect(errorCodes(garbage)).toEqual(['BAD_USER_INPUT']);
  });

  it("keeps another user's agents invisible everywhere", async () => {
    const { id } = (await create(alice, { name: 'secret', provider: 'echo', model: 'm' })).data.createAgent;
    const asBob = asUser(bob);
    expect((await postGraphQL(url, `query ($id: ID!) { agent(id: $id) { id } }`, { id }, asBob)).data.agent).toBeNull();
    expect((await postGraphQL(url, `{ agents { totalCount } }`, {}, asBob)).data.agents.totalCount).toBe(0);
    expect(errorCodes(await postGraphQL(url, `mutation ($id: ID!) { updateAgent(id: $id, input: { name: "x" }) { id } }`, { id }, asBob))).toEqual(['NOT_FOUND']);
    expect((await postGraphQL(url, `mutation ($id: ID!) { deleteAgent(id: $id) }`, { id }, asBob)).data.deleteAgent).toBe(false);
    const entities = `query ($r: [_Any!]!) { _entities(representations: $r) { ... on Agent { id name } } }`;
    expect((await postGraphQL(url, entities, { r: [{ __typename: 'Agent', id }] }, asBob)).data._entities).toEqual([null]);
    expect((await postGraphQL(url, entities, { r: [{ __typename: 'Agent', id }] }, asAnonymous())).data._entities).toEqual([null]);
    expect((await postGraphQL(url, entities, { r: [{ __typename: 'Agent', id: 'not-a-uuid' }] }, asUser(alice))).data._entities).toEqual([null]);
    expect((await postGraphQL(url, `query ($id: ID!) { agent(id: $id) { id } }`, { id: 'nope' }, asUser(alice))).data.agent).toBeNull();
  });

  it('refuses callers without the router proof, anonymous callers and keys without the scope', async () => {
    const direct = await postGraphQL(url, `{ agents { totalCount } }`);
    expect(direct.status).toBe(401);
    expect(errorCodes(direct)).toEqual(['UNAUTHENTICATED']);
    const forged = await postGraphQL(url, `{ agents { totalCount } }`, {}, { 'x-principal-proof': 'eyJhbGciOiJub25lIn0.eyJrbmQiOiJ1c2VyIn0.' });
    expect(errorCodes(forged)).toEqual(['UNAUTHENTICATED']);
    expect(errorCodes(await postGraphQL(url, `{ agents { totalCount } }`, {}, asAnonymous()))).toEqual(['UNAUTHENTICATED']);
    const readOnly = asApiKey(alice, ['agents:read']);
    expect((await postGraphQL(url, `{ agents { totalCount } }`, {}, readOnly)).errors).toBeUndefined();
    expect(errorCodes(await postGraphQL(url, CREATE, { input: { name: 'n', provider: 'echo', model: 'm' } }, readOnly))).toEqual(['FORBIDDEN']);
  });

  it('answers health and readiness without a proof', async () => {
    const base = url.replace(/\/graphql$/, '');
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ checks: { database: true } });
  });
});
