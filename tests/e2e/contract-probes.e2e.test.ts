import { randomUUID } from 'node:crypto';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, signUp } from '../support/client.js';
import { errorCodes, type GraphQLResponse } from '../support/graphql.js';
import { startPlatform, type Platform } from '../support/platform.js';

/**
 * Every root field the router serves, probed as another user (with the first user's ids) and
 * anonymously, against the router and the four subgraphs as separate processes. The list of probes
 * is checked against the served schema, so a root field added later without a probe fails here.
 */
let platform: Platform;
let alice: Awaited<ReturnType<typeof signUp>>;
let bob: Awaited<ReturnType<typeof signUp>>;
let ids: Record<string, string>;
const password = 'correct horse battery staple';
const SECRETS = /Private agent|secret title|my secret message|secret work/;

beforeAll(async () => {
  platform = await startPlatform('e2e_probes', { env: { RATE_LIMIT_AUTH_PER_MINUTE: '1000' } });
  const suffix = randomUUID().slice(0, 8);
  [alice, bob] = await Promise.all([signUp(platform.url, `alice-${suffix}@example.com`, password), signUp(platform.url, `bob-${suffix}@example.com`, password)]);
  const agentId = (await alice.client.data(`mutation { createAgent(input: { name: "Private agent", provider: "echo", model: "m" }) { id } }`)).createAgent.id;
  const sessionId = (await alice.client.data(`mutation ($a: ID!) { createSession(agentId: $a, title: "secret title") { id } }`, { a: agentId })).createSession.id;
  await alice.client.data(`mutation ($s: ID!) { appendMessage(sessionId: $s, role: USER, content: "my secret message") { id } }`, { s: sessionId });
  const taskId = (await alice.client.data(`mutation ($a: ID!, $s: ID) { runTask(input: { agentId: $a, sessionId: $s, input: "secret work" }) { id } }`, { a: agentId, s: sessionId })).runTask.id;
  const keyId = (await alice.client.data(`mutation { createApiKey(name: "mine") { apiKey { id } } }`)).createApiKey.apiKey.id;
  ids = { agentId, sessionId, taskId, keyId, aliceEmail: alice.user.email, aliceRefresh: alice.refreshToken };
}, 120_000);

afterAll(async () => {
  await platform?.stop();
});

type Check = (response: GraphQLResponse) => void;

/** Refused by the router before any subgraph runs: 401 UNAUTHENTICATED and no data. */
const refusedAnonymously: Check = (r) => {
  expect(r.status).toBe(401);
  expect(errorCodes(r)).toEqual(['UNAUTHENTICATED']);
  expect(r.data).toBeUndefined();
};

interface Probe {
  query: string;
  /** Variables; `ids` are merged in. */
  variables?: () => Record<string, unknown>;
  asOtherUser: Check;
  anonymously: Check;
}

/** One probe per root field of the contract (subscriptions are probed over graphql-ws below). */
const probes: Record<string, Probe> = {
  me: {
    query: '{ me { id email } }',
    asOtherUser: (r) => expect(r.data.me.id).toBe(bob.user.id),
    anonymously: (r) => expect(r.data).toEqual({ me: null }),
  },
  apiKeys: {
    query: '{ apiKeys { id } }',
    asOtherUser: (r) => expect(JSON.stringify(r.data)).not.toContain(ids.keyId),
    anonymously: refusedAnonymously,
  },
  agent: { query: 'query ($agentId: ID!) { agent(id: $agentId) { id } }', asOtherUser: (r) => expect(r.data).toEqual({ agent: null }), anonymously: refusedAnonymously },
  agents: {
    query: '{ agents { totalCount edges { node { id } } } }',
    asOtherUser: (r) => expect(JSON.stringify(r.data)).not.toContain(ids.agentId),
    anonymously: refusedAnonymously,
  },
  session: {
    query: 'query ($sessionId: ID!) { session(id: $sessionId) { id } }',
    asOtherUser: (r) => expect(r.data).toEqual({ session: null }),
    anonymously: refusedAnonymously,
  },
  sessions: {
    query: 'query ($agentId: ID) { sessions(agentId: $agentId) { totalCount } }',
    asOtherUser: (r) => expect(r.data.sessions.totalCount).toBe(0),
    anonymously: refusedAnonymously,
  },
  task: { query: 'query ($taskId: ID!) { task(id: $taskId) { id } }', asOtherUser: (r) => expect(r.data).toEqual({ task: null }), anonymously: refusedAnonymously },
  tasks: {
    query: 'query ($agentId: ID) { tasks(agentId: $agentId) { totalCount } }',
    asOtherUser: (r) => expect(r.data.tasks.totalCount).toBe(0),
    anonymously: refusedAnonymously,
  },
  signUp: {
    // Taking someone's address is refused (CONFLICT, as the schema documents); a fresh one works for anyone.
    query: 'mutation ($email: String!) { signUp(email: $email, password: "another password") { user { id email } } }',
    variables: () => ({ email: ids.aliceEmail }),
    asOtherUser: (r) => expect(errorCodes(r)).toEqual(['CONFLICT']),
    anonymously: (r) => expect(errorCodes(r)).toEqual(['CONFLICT']),
  },
  login: {
    // A wrong password for a real account answers exactly like an unknown account (checked below).
    query: 'mutation ($email: String!) { login(email: $email, password: "not the password") { accessToken } }',
    variables: () => ({ email: ids.aliceEmail }),
    asOtherUser: (r) => expect(errorCodes(r)).toEqual(['UNAUTHENTICATED']),
    anonymously: (r) => {
      expect(r.status).toBe(200);
      expect(errorCodes(r)).toEqual(['UNAUTHENTICATED']);
    },
  },
  refreshToken: {
    query: 'mutation ($token: String!) { refreshToken(refreshToken: $token) { accessToken } }',
    variables: () => ({ token: 'x'.repeat(43) }),
    asOtherUser: (r) => expect(errorCodes(r)).toEqual(['UNAUTHENTICATED']),
    anonymously: (r) => {
      expect(r.status).toBe(200);
      expect(errorCodes(r)).toEqual(['UNAUTHENTICATED']);
    },
  },
  logout: {
    query: 'mutation ($token: String!) { logout(refreshToken: $token) }',
    variables: () => ({ token: 'x'.repeat(43) }),
    asOtherUser: (r) => expect(r.data).toEqual({ logout: false }),
    anonymously: (r) => expect(r.data).toEqual({ logout: false }),
  },
  createApiKey: {
    query: 'mutation { createApiKey(name: "probe") { apiKey { id } } }',
    asOtherUser: (r) => expect(r.data.createApiKey.apiKey.id).not.toBe(ids.keyId),
    anonymously: refusedAnonymously,
  },
  revokeApiKey: {
    query: 'mutation ($keyId: ID!) { revokeApiKey(id: $keyId) { id } }',
    asOtherUser: (r) => expect(errorCodes(r)).toEqual(['NOT_FOUND']),
    anonymously: refusedAnonymously,
  },
  createAgent: {
    query: 'mutation { createAgent(input: { name: "Probe", provider: "echo", model: "m" }) { id sessions { totalCount } tasks { totalCount } } }',
    // Bob's own new agent, with none of Alice's sessions or tasks.
    asOtherUser: (r) => expect(r.data.createAgent).toMatchObject({ sessions: { totalCount: 0 }, tasks: { totalCount: 0 } }),
    anonymously: refusedAnonymously,
  },
  updateAgent: {
    query: 'mutation ($agentId: ID!) { updateAgent(id: $agentId, input: { name: "pwned" }) { id } }',
    asOtherUser: (r) => expect(errorCodes(r)).toEqual(['NOT_FOUND']),
    anonymously: refusedAnonymously,
  },
  deleteAgent: { query: 'mutation ($agentId: ID!) { deleteAgent(id: $agentId) }', asOtherUser: (r) => expect(r.data).toEqual({ deleteAgent: false }), anonymously: refusedAnonymously },
  createSession: {
    query: 'mutation ($agentId: ID!) { createSession(agentId: $agentId) { id } }',
    asOtherUser: (r) => expect(errorCodes(r)).toEqual(['NOT_FOUND']),
    anonymously: refusedAnonymously,
  },
  appendMessage: {
    query: 'mutation ($sessionId: ID!) { appendMessage(sessionId: $sessionId, role: USER, content: "x") { id } }',
    asOtherUser: (r) => expect(errorCodes(r)).toEqual(['NOT_FOUND']),
    anonymously: refusedAnonymously,
  },
  deleteSession: {
    query: 'mutation ($sessionId: ID!) { deleteSession(id: $sessionId) }',
    asOtherUser: (r) => expect(r.data).toEqual({ deleteSession: false }),
    anonymously: refusedAnonymously,
  },
  runTask: {
    query: 'mutation ($agentId: ID!) { runTask(input: { agentId: $agentId, input: "x" }) { id } }',
    asOtherUser: (r) => expect(errorCodes(r)).toEqual(['NOT_FOUND']),
    anonymously: refusedAnonymously,
  },
  cancelTask: {
    query: 'mutation ($taskId: ID!) { cancelTask(id: $taskId) { id } }',
    asOtherUser: (r) => expect(errorCodes(r)).toEqual(['NOT_FOUND']),
    anonymously: refusedAnonymously,
  },
};

describe('the contract probed as another user and anonymously', () => {
  it('has a probe for every root field the router serves', async () => {
    const { __schema } = await alice.client.data('{ __schema { queryType { fields { name } } mutationType { fields { name } } subscriptionType { fields { name } } } }');
    const served = [...__schema.queryType.fields, ...__schema.mutationType.fields].map((field: { name: string }) => field.name).sort();
    expect(served).toEqual(Object.keys(probes).sort());
    expect(__schema.subscriptionType.fields.map((field: { name: string }) => field.name)).toEqual(['taskEvents']);
  });

  it.each(Object.keys(probes))('%s leaks nothing of another user, and is refused anonymously unless it signs in', async (name) => {
    const probe = probes[name];
    const variables = { ...ids, ...probe.variables?.() };
    const asBob = await bob.client.request(probe.query, variables);
    probe.asOtherUser(asBob);
    expect(JSON.stringify(asBob.data ?? null)).not.toMatch(SECRETS);
    expect(JSON.stringify(asBob.errors ?? [])).not.toMatch(SECRETS);
    const anonymous = await new Client(platform.url).request(probe.query, variables);
    probe.anonymously(anonymous);
    expect(JSON.stringify(anonymous)).not.toMatch(SECRETS);
  });

  it('answers a wrong password for a real account exactly like an unknown account', async () => {
    const login = 'mutation ($email: String!) { login(email: $email, password: "not the password") { accessToken } }';
    const real = await new Client(platform.url).request(login, { email: ids.aliceEmail });
    const unknown = await new Client(platform.url).request(login, { email: `nobody-${randomUUID().slice(0, 8)}@example.com` });
    expect(real.errors).toEqual(unknown.errors);
  });

  it("keeps Alice's session out of Bob's tasks, and her task's events out of his and anonymous subscriptions", async () => {
    const bobAgent = (await bob.client.data(`mutation { createAgent(input: { name: "Bob's", provider: "echo", model: "m" }) { id } }`)).createAgent.id;
    const borrowed = await bob.client.request(`mutation ($a: ID!, $s: ID) { runTask(input: { agentId: $a, sessionId: $s, input: "x" }) { id } }`, { a: bobAgent, s: ids.sessionId });
    expect(errorCodes(borrowed)).toEqual(['NOT_FOUND']);

    const subscribe = async (connectionParams: Record<string, string>) => {
      const client = createClient({ url: platform.url.replace(/^http/, 'ws'), webSocketImpl: WebSocket, connectionParams, retryAttempts: 0, lazy: true });
      const events: unknown[] = [];
      const errors: unknown[] = [];
      try {
        for await (const result of client.iterate({ query: 'subscription ($id: ID!) { taskEvents(taskId: $id) { sequence type } }', variables: { id: ids.taskId } })) {
          if (result.errors) errors.push(...result.errors);
          if (result.data) events.push(result.data);
        }
      } catch (error) {
        // graphql-ws rejects with the GraphQL errors of an `error` message, or with the socket's close event.
        if (Array.isArray(error)) errors.push(...error);
        else if (error instanceof Error) errors.push({ message: error.message });
        else errors.push({ code: (error as { code?: number }).code, reason: (error as { reason?: string }).reason });
      } finally {
        await client.dispose();
      }
      return { events, errors };
    };
    const asBob = await subscribe({ authorization: `Bearer ${bob.accessToken}` });
    expect(asBob.events).toEqual([]);
    expect(JSON.stringify(asBob.errors)).toContain('NOT_FOUND');
    const anonymous = await subscribe({});
    expect(anonymous.events).toEqual([]);
    expect(anonymous.errors).toEqual([expect.objectContaining({ code: 4401 })]);
  });

  it("leaves Alice's objects as they were", async () => {
    const mine = await alice.client.data(
      `query ($agentId: ID!, $sessionId: ID!, $taskId: ID!) { agent(id: $agentId) { name } session(id: $sessionId) { title messages { totalCount } } task(id: $taskId) { status } apiKeys { id revokedAt } }`,
      ids,
    );
    expect(mine).toMatchObject({ agent: { name: 'Private agent' }, session: { title: 'secret title', messages: { totalCount: 1 } }, task: { status: 'QUEUED' } });
    expect(mine.apiKeys).toContainEqual({ id: ids.keyId, revokedAt: null });
  });
});

describe('subgraphs reached directly', () => {
  it('answer UNAUTHENTICATED in JSON, with no stack trace, to malformed and oversized bodies too', async () => {
    for (const [name, base] of Object.entries(platform.subgraphs)) {
      for (const body of ['{"query": "{ me { id } }"', JSON.stringify({ query: '{ __typename }', variables: { pad: 'x'.repeat(3 * 1024 * 1024) } })]) {
        const response = await fetch(`${base}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
        const text = await response.text();
        expect(response.status, name).toBe(401);
        expect((JSON.parse(text) as { errors: { extensions: { code: string } }[] }).errors.map((e) => e.extensions.code), name).toEqual(['UNAUTHENTICATED']);
        expect(text, name).not.toMatch(/node_modules|\bat \S+ \(/);
      }
    }
  });
});
