import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, TEST_INTERNAL_SECRET } from '../../tests/support/database.js';
import { asAnonymous, asApiKey, asUser, errorCodes, postGraphQL } from '../../tests/support/graphql.js';
import { startAgentSubgraph } from '../agent/server.js';
import { appendTaskMessages } from './messages.js';
import { startMemorySubgraph } from './server.js';

const alice = randomUUID();
const bob = randomUUID();
let agentUrl: string;
let url: string;
let memory: Awaited<ReturnType<typeof startMemorySubgraph>>;
let databaseUrl: string;
const disposers: (() => Promise<void>)[] = [];

beforeAll(async () => {
  const db = await createTestDatabase('memory');
  disposers.push(db.drop);
  databaseUrl = db.url;
  const agent = await startAgentSubgraph({ port: 0, databaseUrl, internalSecret: TEST_INTERNAL_SECRET, logLevel: 'silent' });
  disposers.unshift(agent.close);
  agentUrl = agent.url;
  memory = await startMemorySubgraph({ port: 0, databaseUrl, internalSecret: TEST_INTERNAL_SECRET, agentUrl, logLevel: 'silent' });
  disposers.unshift(memory.close);
  url = `${memory.url}/graphql`;
});
afterAll(async () => {
  for (const dispose of disposers) await dispose();
});

async function createAgent(owner: string, name = 'helper'): Promise<string> {
  const response = await postGraphQL(`${agentUrl}/graphql`, `mutation ($input: CreateAgentInput!) { createAgent(input: $input) { id } }`, { input: { name, provider: 'echo', model: 'echo-1' } }, asUser(owner));
  expect(response.errors).toBeUndefined();
  return response.data.createAgent.id;
}

const CREATE_SESSION = `mutation ($agentId: ID!, $title: String) { createSession(agentId: $agentId, title: $title) { id title agent { id } createdAt updatedAt messages { totalCount edges { node { id } } pageInfo { hasNextPage endCursor } } } }`;
const createSession = (owner: string, agentId: string, title: string | null = null, headers = asUser(owner)) => postGraphQL(url, CREATE_SESSION, { agentId, title }, headers);
async function newSession(owner: string, agentId: string, title: string | null = null): Promise<string> {
  const response = await createSession(owner, agentId, title);
  expect(response.errors).toBeUndefined();
  return response.data.createSession.id;
}

const APPEND = `mutation ($sessionId: ID!, $role: MessageRole!, $content: String!) { appendMessage(sessionId: $sessionId, role: $role, content: $content) { id role content tokenCount createdAt task { id } } }`;
const append = (owner: string, sessionId: string, content: string, role = 'USER', headers = asUser(owner)) => postGraphQL(url, APPEND, { sessionId, role, content }, headers);

const MESSAGES = `query ($id: ID!, $first: Int, $after: String) { session(id: $id) { updatedAt messages(first: $first, after: $after) { totalCount edges { cursor node { id role content tokenCount task { id } } } pageInfo { hasNextPage endCursor } } } }`;
const ENTITIES = `query ($r: [_Any!]!) { _entities(representations: $r) { ... on Session { id title agent { id } messages { totalCount } } ... on Agent { id sessions(first: 10) { totalCount edges { node { id } } } } } }`;

describe('memory subgraph', () => {
  it('opens sessions only on agents the caller owns, asking the agent subgraph', async () => {
    const agentId = await createAgent(alice);
    const created = await createSession(alice, agentId, 'Planning');
    expect(created.errors).toBeUndefined();
    expect(created.data.createSession).toMatchObject({
      title: 'Planning',
      agent: { id: agentId },
      messages: { totalCount: 0, edges: [], pageInfo: { hasNextPage: false, endCursor: null } },
    });
    expect(created.data.createSession.createdAt).toBe(created.data.createSession.updatedAt);
    const untitled = await createSession(alice, agentId);
    expect(untitled.data.createSession.title).toBeNull();

    const bobsAgent = await createAgent(bob);
    for (const agent of [bobsAgent, randomUUID(), 'not-a-uuid']) {
      const refused = await createSession(alice, agent);
      expect(errorCodes(refused), agent).toEqual(['NOT_FOUND']);
      expect(refused.errors![0].message).toBe('Agent not found.');
    }
    const tooLong = await createSession(alice, agentId, 'x'.repeat(201));
    expect(errorCodes(tooLong)).toEqual(['BAD_USER_INPUT']);
    expect(tooLong.errors![0].extensions!.field).toBe('title');
    expect(errorCodes(await createSession(alice, agentId, 'nul\u0000'))).toEqual(['BAD_USER_INPUT']);
  });

  it('answers SERVICE_UNAVAILABLE when the agent subgraph cannot be reached', async () => {
    const orphan = await startMemorySubgraph({ port: 0, databaseUrl, internalSecret: TEST_INTERNAL_SECRET, agentUrl: 'http://127.0.0.1:9', logLevel: 'silent' });
    try {
      const response = await postGraphQL(`${orphan.url}/graphql`, CREATE_SESSION, { agentId: randomUUID() }, asUser(alice));
      expect(errorCodes(response)).toEqual(['SERVICE_UNAVAILABLE']);
    } finally {
      await orphan.close();
    }
  });

  it('appends messages and pages through them oldest first, in a stable order', async () => {
    const sessionId = await newSession(alice, await createAgent(alice));
    const before = (await postGraphQL(url, MESSAGES, { id: sessionId }, asUser(alice))).data.session.updatedAt;

    const first = await append(alice, sessionId, 'hello there', 'SYSTEM');
    expect(first.errors).toBeUndefined();
    expect(first.data.appendMessage).toMatchObject({ role: 'SYSTEM', content: 'hello there', tokenCount: 3, task: null });
    const contents = ['hello there'];
    // Sequential and concurrent appends: many share a millisecond, the order must not wobble.
    for (let i = 1; i < 4; i++) {
      contents.push(`  message ${i}\n`);
      expect((await append(alice, sessionId, contents[i], i % 2 ? 'USER' : 'ASSISTANT')).errors).toBeUndefined();
    }
    const burst = await Promise.all(Array.from({ length: 6 }, (_, i) => append(alice, sessionId, `burst ${i}`)));
    const burstIds = burst.map((r) => r.data.appendMessage.id);

    const seen: { id: string; content: string; cursor: string }[] = [];
    let after: string | null = null;
    let pages = 0;
    for (;;) {
      const page: any = await postGraphQL(url, MESSAGES, { id: sessionId, first: 3, after }, asUser(alice));
      expect(page.errors).toBeUndefined();
      const connection = page.data.session.messages;
      expect(connection.totalCount).toBe(10);
      seen.push(...connection.edges.map((e: any) => ({ id: e.node.id, content: e.node.content, cursor: e.cursor })));
      pages++;
      expect(connection.pageInfo.endCursor).toBe(connection.edges.at(-1).cursor);
      if (!connection.pageInfo.hasNextPage) break;
      after = connection.pageInfo.endCursor;
    }
    expect(pages).toBe(4);
    expect(seen.slice(0, 4).map((m) => m.content)).toEqual(contents);
    expect(new Set(seen.slice(4).map((m) => m.id))).toEqual(new Set(burstIds));

    // The same cursor gives the same page again; the whole list in one page agrees.
    const again = await postGraphQL(url, MESSAGES, { id: sessionId, first: 3, after: seen[2].cursor }, asUser(alice));
    expect(again.data.session.messages.edges.map((e: any) => e.node.id)).toEqual(seen.slice(3, 6).map((m) => m.id));
    const all = await postGraphQL(url, MESSAGES, { id: sessionId, first: 100 }, asUser(alice));
    expect(all.data.session.messages.edges.map((e: any) => e.node.id)).toEqual(seen.map((m) => m.id));
    expect(all.data.session.messages.pageInfo.hasNextPage).toBe(false);
    expect(new Date(all.data.session.updatedAt).getTime()).toBeGreaterThan(new Date(before).getTime());

    for (const bad of [{ first: 0 }, { first: 101 }, { after: 'garbage' }]) {
      expect(errorCodes(await postGraphQL(url, MESSAGES, { id: sessionId, ...bad }, asUser(alice))), JSON.stringify(bad)).toEqual(['BAD_USER_INPUT']);
    }
  });

  it('checks content and only appends to the caller\'s own sessions', async () => {
    const sessionId = await newSession(alice, await createAgent(alice));
    const largest = await append(alice, sessionId, 'x'.repeat(200_000));
    expect(largest.data.appendMessage.tokenCount).toBe(50_000);
    for (const content of ['', '  \n', 'x'.repeat(200_001), 'a\u0000b']) {
      const refused = await append(alice, sessionId, content);
      expect(errorCodes(refused), content.slice(0, 10)).toEqual(['BAD_USER_INPUT']);
      expect(refused.errors![0].extensions!.field).toBe('content');
    }
    for (const [owner, session] of [[bob, sessionId], [alice, randomUUID()], [alice, 'not-a-uuid']]) {
      const refused = await append(owner, session, 'hi');
      expect(errorCodes(refused)).toEqual(['NOT_FOUND']);
      expect(refused.errors![0].message).toBe('Session not found.');
    }
    const messages = await postGraphQL(url, MESSAGES, { id: sessionId }, asUser(alice));
    expect(messages.data.session.messages.totalCount).toBe(1);
  });

  it("lists the caller's sessions, optionally of one agent, and Agent.sessions by reference", async () => {
    const owner = randomUUID();
    const [one, two] = [await createAgent(owner, 'one'), await createAgent(owner, 'two')];
    const ids = [await newSession(owner, one, 'a'), await newSession(owner, two, 'b'), await newSession(owner, one, 'c')];
    await newSession(bob, await createAgent(bob));

    const seen: string[] = [];
    let after: string | null = null;
    for (;;) {
      const page: any = await postGraphQL(url, `query ($after: String) { sessions(first: 2, after: $after) { totalCount edges { node { id } } pageInfo { hasNextPage endCursor } } }`, { after }, asUser(owner));
      expect(page.data.sessions.totalCount).toBe(3);
      seen.push(...page.data.sessions.edges.map((e: any) => e.node.id));
      if (!page.data.sessions.pageInfo.hasNextPage) break;
      after = page.data.sessions.pageInfo.endCursor;
    }
    expect(seen).toEqual(ids);

    const ofAgent = (agentId: string, headers = asUser(owner)) => postGraphQL(url, `query ($agentId: ID) { sessions(agentId: $agentId) { totalCount edges { node { id title agent { id } } } } }`, { agentId }, headers);
    expect((await ofAgent(one)).data.sessions).toEqual({
      totalCount: 2,
      edges: [{ node: { id: ids[0], title: 'a', agent: { id: one } } }, { node: { id: ids[2], title: 'c', agent: { id: one } } }],
    });
    expect((await ofAgent('not-a-uuid')).data.sessions).toEqual({ totalCount: 0, edges: [] });
    expect((await ofAgent(one, asUser(bob))).data.sessions).toEqual({ totalCount: 0, edges: [] });
    expect(errorCodes(await postGraphQL(url, `{ sessions(after: "nope") { totalCount } }`, {}, asUser(owner)))).toEqual(['BAD_USER_INPUT']);
    expect(errorCodes(await postGraphQL(url, `{ sessions(first: 500) { totalCount } }`, {}, asUser(owner)))).toEqual(['BAD_USER_INPUT']);

    const reference = [{ __typename: 'Agent', id: one }];
    const mine = await postGraphQL(url, ENTITIES, { r: reference }, asUser(owner));
    expect(mine.data._entities).toEqual([{ id: one, sessions: { totalCount: 2, edges: [{ node: { id: ids[0] } }, { node: { id: ids[2] } }] } }]);
    const theirs = await postGraphQL(url, ENTITIES, { r: reference }, asUser(bob));
    expect(theirs.data._entities).toEqual([{ id: one, sessions: { totalCount: 0, edges: [] } }]);
    expect(errorCodes(await postGraphQL(url, ENTITIES, { r: reference }, asApiKey(owner, ['memory:write'])))).toEqual(['FORBIDDEN']);
  });

  it('resolves Session references for their owner only, in one batch', async () => {
    const agentId = await createAgent(alice);
    const [s1, s2] = [await newSession(alice, agentId, 's1'), await newSession(alice, agentId, 's2')];
    await append(alice, s1, 'one');
    const representations = [s2, 'not-a-uuid', s1, randomUUID(), s1.toUpperCase()].map((id) => ({ __typename: 'Session', id }));
    const owner = await postGraphQL(url, ENTITIES, { r: representations }, asUser(alice));
    expect(owner.errors).toBeUndefined();
    expect(owner.data._entities).toEqual([
      { id: s2, title: 's2', agent: { id: agentId }, messages: { totalCount: 0 } },
      null,
      { id: s1, title: 's1', agent: { id: agentId }, messages: { totalCount: 1 } },
      null,
      { id: s1, title: 's1', agent: { id: agentId }, messages: { totalCount: 1 } },
    ]);
    const single = [{ __typename: 'Session', id: s1 }];
    for (const headers of [asUser(bob), asAnonymous(), asApiKey(alice, ['memory:write', 'tasks:read'])]) {
      const hidden = await postGraphQL(url, ENTITIES, { r: single }, headers);
      expect(hidden.errors).toBeUndefined();
      expect(hidden.data._entities).toEqual([null]);
    }
    expect((await postGraphQL(url, ENTITIES, { r: single }, asApiKey(alice, ['memory:read']))).data._entities[0].id).toBe(s1);
  });

  it("deletes the caller's own sessions with their messages", async () => {
    const sessionId = await newSession(alice, await createAgent(alice));
    await append(alice, sessionId, 'one');
    await append(alice, sessionId, 'two');
    const remove = (owner: string, id: string) => postGraphQL(url, `mutation ($id: ID!) { deleteSession(id: $id) }`, { id }, asUser(owner));
    expect((await remove(bob, sessionId)).data.deleteSession).toBe(false);
    expect((await remove(alice, 'not-a-uuid')).data.deleteSession).toBe(false);
    expect((await remove(alice, sessionId)).data.deleteSession).toBe(true);
    expect((await remove(alice, sessionId)).data.deleteSession).toBe(false);
    expect((await postGraphQL(url, `query ($id: ID!) { session(id: $id) { id } }`, { id: sessionId }, asUser(alice))).data.session).toBeNull();
    const left = await memory.orm.em.fork().execute(`select count(*)::int as n from "memory"."messages" where session_id = ?`, [sessionId]);
    expect(left[0].n).toBe(0);
    expect(errorCodes(await append(alice, sessionId, 'late'))).toEqual(['NOT_FOUND']);
  });

  it("appends a task's input and answer exactly once however often the event comes", async () => {
    const sessionId = await newSession(alice, await createAgent(alice));
    await append(alice, sessionId, 'earlier');
    const taskId = randomUUID();
    const event = { ownerId: alice, sessionId, taskId, input: 'What is 2+2?', output: 'Four.\u0000', outputTokens: 2 };

    const updatedAt = async () => (await postGraphQL(url, MESSAGES, { id: sessionId }, asUser(alice))).data.session.updatedAt;
    const before = await updatedAt();
    expect(await appendTaskMessages(memory.orm.em.fork(), event)).toEqual({ sessionFound: true, inserted: 2 });
    const after = await updatedAt();
    expect(new Date(after).getTime()).toBeGreaterThan(new Date(before).getTime());
    // Redelivered, even concurrently: nothing more, and the session does not look touched.
    const replays = await Promise.all([1, 2, 3].map(() => appendTaskMessages(memory.orm.em.fork(), event)));
    expect(replays).toEqual([1, 2, 3].map(() => ({ sessionFound: true, inserted: 0 })));
    expect(await updatedAt()).toBe(after);

    const messages = await postGraphQL(url, MESSAGES, { id: sessionId }, asUser(alice));
    expect(messages.data.session.messages.totalCount).toBe(3);
    expect(messages.data.session.messages.edges.map((e: any) => e.node)).toMatchObject([
      { role: 'USER', content: 'earlier', task: null },
      { role: 'USER', content: 'What is 2+2?', tokenCount: 3, task: { id: taskId } },
      { role: 'ASSISTANT', content: 'Four.\uFFFD', tokenCount: 2, task: { id: taskId } },
    ]);

    // A second task in the same session appends again; a gone or foreign session takes nothing.
    expect(await appendTaskMessages(memory.orm.em.fork(), { ...event, taskId: randomUUID() })).toEqual({ sessionFound: true, inserted: 2 });
    expect(await appendTaskMessages(memory.orm.em.fork(), { ...event, ownerId: bob })).toEqual({ sessionFound: false, inserted: 0 });
    expect(await appendTaskMessages(memory.orm.em.fork(), { ...event, sessionId: randomUUID() })).toEqual({ sessionFound: false, inserted: 0 });
    expect(await appendTaskMessages(memory.orm.em.fork(), { ...event, sessionId: 'nope' })).toEqual({ sessionFound: false, inserted: 0 });
    await expect(appendTaskMessages(memory.orm.em.fork(), { ...event, taskId: 'nope' })).rejects.toThrow(TypeError);
  });

  it('refuses callers without the router proof, anonymous callers and keys without the scope', async () => {
    const agentId = await createAgent(alice);
    const sessionId = await newSession(alice, agentId);

    const direct = await postGraphQL(url, `{ sessions { totalCount } }`);
    expect(direct.status).toBe(401);
    expect(errorCodes(direct)).toEqual(['UNAUTHENTICATED']);
    expect(errorCodes(await postGraphQL(url, `{ sessions { totalCount } }`, {}, { 'x-principal-proof': 'forged' }))).toEqual(['UNAUTHENTICATED']);
    expect(errorCodes(await postGraphQL(url, `{ sessions { totalCount } }`, {}, asAnonymous()))).toEqual(['UNAUTHENTICATED']);
    expect(errorCodes(await createSession(alice, agentId, null, asAnonymous()))).toEqual(['UNAUTHENTICATED']);

    const readOnly = asApiKey(alice, ['memory:read', 'agents:read']);
    expect((await postGraphQL(url, `query ($id: ID!) { session(id: $id) { id } }`, { id: sessionId }, readOnly)).data.session.id).toBe(sessionId);
    expect(errorCodes(await createSession(alice, agentId, null, readOnly))).toEqual(['FORBIDDEN']);
    expect(errorCodes(await append(alice, sessionId, 'hi', 'USER', readOnly))).toEqual(['FORBIDDEN']);
    expect(errorCodes(await postGraphQL(url, `mutation ($id: ID!) { deleteSession(id: $id) }`, { id: sessionId }, readOnly))).toEqual(['FORBIDDEN']);

    const writeOnly = asApiKey(alice, ['memory:write']);
    expect(errorCodes(await postGraphQL(url, `query ($id: ID!) { session(id: $id) { id } }`, { id: sessionId }, writeOnly))).toEqual(['FORBIDDEN']);
    expect(errorCodes(await postGraphQL(url, `{ sessions { totalCount } }`, {}, writeOnly))).toEqual(['FORBIDDEN']);
    // The agent check needs no agent scope: the agent subgraph answers by owner.
    expect((await createSession(alice, agentId, 'by key', writeOnly)).data.createSession.title).toBe('by key');
  });

  it('answers health and readiness without a proof', async () => {
    expect((await fetch(`${memory.url}/healthz`)).status).toBe(200);
    const ready = await fetch(`${memory.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ checks: { database: true } });
  });
});
