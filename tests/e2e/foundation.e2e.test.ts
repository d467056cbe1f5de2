import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AUTH_FIELDS, Client, signUp } from '../support/client.js';
import { errorCodes, postGraphQL } from '../support/graphql.js';
import { startPlatform, type Platform } from '../support/platform.js';

/**
 * The foundation as a frontend sees it: the router and the four subgraphs as separate processes
 * on the real PostgreSQL and Redis, driven with fetch.
 */
let platform: Platform;
let alice: Awaited<ReturnType<typeof signUp>>;
let bob: Awaited<ReturnType<typeof signUp>>;
const password = 'correct horse battery staple';

beforeAll(async () => {
  platform = await startPlatform('e2e_foundation', { env: { RATE_LIMIT_AUTH_PER_MINUTE: '1000' } });
  const suffix = randomUUID().slice(0, 8);
  [alice, bob] = await Promise.all([signUp(platform.url, `alice-${suffix}@example.com`, password, 'Alice'), signUp(platform.url, `bob-${suffix}@example.com`, password)]);
}, 120_000);

afterAll(async () => {
  await platform?.stop();
});

const AGENT_FIELDS = 'id name description provider model systemPrompt temperature maxTokens status metadata owner { id email } createdAt updatedAt';

describe('accounts and tokens', () => {
  it('logs in, rotates the refresh token and revokes the family on reuse', async () => {
    const anonymous = new Client(platform.url);
    const { login } = await anonymous.data(`mutation ($e: String!, $p: String!) { login(email: $e, password: $p) { ${AUTH_FIELDS} } }`, { e: alice.user.email.toUpperCase(), p: password });
    expect(login.user.id).toBe(alice.user.id);
    expect(login.expiresIn).toBeGreaterThan(0);

    const wrong = await anonymous.request(`mutation ($e: String!) { login(email: $e, password: "not the password") { accessToken } }`, { e: alice.user.email });
    expect(errorCodes(wrong)).toEqual(['UNAUTHENTICATED']);

    const refresh = `mutation ($t: String!) { refreshToken(refreshToken: $t) { ${AUTH_FIELDS} } }`;
    const first = (await anonymous.data(refresh, { t: login.refreshToken })).refreshToken;
    expect(first.refreshToken).not.toBe(login.refreshToken);
    expect((await Client.bearer(platform.url, first.accessToken).data('{ me { id email name } }')).me).toEqual({ id: alice.user.id, email: alice.user.email, name: 'Alice' });

    // Reusing the spent token is refused and revokes every token of its family, the fresh one too.
    expect(errorCodes(await anonymous.request(refresh, { t: login.refreshToken }))).toEqual(['UNAUTHENTICATED']);
    expect(errorCodes(await anonymous.request(refresh, { t: first.refreshToken }))).toEqual(['UNAUTHENTICATED']);

    const other = (await anonymous.data(`mutation ($e: String!, $p: String!) { login(email: $e, password: $p) { refreshToken } }`, { e: alice.user.email, p: password })).login;
    expect((await anonymous.data(`mutation ($t: String!) { logout(refreshToken: $t) }`, { t: other.refreshToken })).logout).toBe(true);
    expect(errorCodes(await anonymous.request(refresh, { t: other.refreshToken }))).toEqual(['UNAUTHENTICATED']);
  });

  it('creates, uses and revokes an API key; a revoked key stops within 2 seconds', async () => {
    const { createApiKey } = await alice.client.data(`mutation { createApiKey(name: "ci", scopes: ["agents:read"]) { secret apiKey { id name prefix scopes createdAt revokedAt } } }`);
    expect(createApiKey.secret.startsWith(createApiKey.apiKey.prefix)).toBe(true);
    expect(createApiKey.apiKey.scopes).toEqual(['agents:read']);

    const viaHeader = new Client(platform.url, { 'x-api-key': createApiKey.secret });
    const viaBearer = Client.bearer(platform.url, createApiKey.secret);
    expect((await viaHeader.data('{ agents { totalCount } }')).agents.totalCount).toBeGreaterThanOrEqual(0);
    expect((await viaBearer.data('{ me { id } }')).me.id).toBe(alice.user.id);
    const denied = await viaHeader.request(`mutation { createAgent(input: { name: "x", provider: "echo", model: "m" }) { id } }`);
    expect(errorCodes(denied)).toEqual(['FORBIDDEN']);

    const { apiKeys } = await alice.client.data('{ apiKeys { id prefix lastUsedAt } }');
    expect(apiKeys.map((k: { id: string }) => k.id)).toContain(createApiKey.apiKey.id);
    expect((await bob.client.data('{ apiKeys { id } }')).apiKeys).toEqual([]);
    expect(errorCodes(await bob.client.request(`mutation ($id: ID!) { revokeApiKey(id: $id) { id } }`, { id: createApiKey.apiKey.id }))).toEqual(['NOT_FOUND']);

    const { revokeApiKey } = await alice.client.data(`mutation ($id: ID!) { revokeApiKey(id: $id) { id revokedAt } }`, { id: createApiKey.apiKey.id });
    expect(revokeApiKey.revokedAt).toBeTruthy();
    const revokedAt = Date.now();
    let stopped = Infinity;
    while (Date.now() - revokedAt < 3000) {
      const response = await viaHeader.request('{ me { id } }');
      if (response.status === 401 && errorCodes(response)[0] === 'UNAUTHENTICATED') {
        stopped = Date.now() - revokedAt;
        break;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(stopped).toBeLessThan(2000);
  });
});

describe('agents, sessions and tasks across the supergraph', () => {
  it('runs the whole lifecycle and one query that spans all four subgraphs', async () => {
    const { createAgent } = await alice.client.data(`mutation ($i: CreateAgentInput!) { createAgent(input: $i) { ${AGENT_FIELDS} } }`, {
      i: { name: 'Researcher', provider: 'echo', model: 'echo-1', systemPrompt: 'Be brief.', temperature: 0.2, maxTokens: 256, metadata: { team: 'docs' } },
    });
    expect(createAgent).toMatchObject({ name: 'Researcher', status: 'ACTIVE', owner: { id: alice.user.id, email: alice.user.email }, metadata: { team: 'docs' } });
    const agentId = createAgent.id;

    const { updateAgent } = await alice.client.data(`mutation ($id: ID!) { updateAgent(id: $id, input: { description: "Finds things", maxTokens: 512 }) { description maxTokens updatedAt } }`, { id: agentId });
    expect(updateAgent).toMatchObject({ description: 'Finds things', maxTokens: 512 });

    const { createSession } = await alice.client.data(`mutation ($a: ID!) { createSession(agentId: $a, title: "First chat") { id title agent { id name } } }`, { a: agentId });
    expect(createSession.agent).toEqual({ id: agentId, name: 'Researcher' });
    const sessionId = createSession.id;
    for (const [role, content] of [['USER', 'Hello'], ['ASSISTANT', 'Hi! How can I help?'], ['USER', 'Tell me about federation']] as const) {
      const { appendMessage } = await alice.client.data(`mutation ($s: ID!, $r: MessageRole!, $c: String!) { appendMessage(sessionId: $s, role: $r, content: $c) { id role content tokenCount createdAt } }`, { s: sessionId, r: role, c: content });
      expect(appendMessage).toMatchObject({ role, content });
    }

    const { runTask } = await alice.client.data(`mutation ($i: RunTaskInput!) { runTask(input: $i) { id status input attempts agent { id } session { id } createdAt } }`, {
      i: { agentId, sessionId, input: 'Summarise our chat', idempotencyKey: 'e2e-1' },
    });
    expect(runTask).toMatchObject({ status: 'QUEUED', input: 'Summarise our chat', attempts: 0, agent: { id: agentId }, session: { id: sessionId } });
    const again = await alice.client.data(`mutation ($i: RunTaskInput!) { runTask(input: $i) { id } }`, { i: { agentId, sessionId, input: 'Summarise our chat', idempotencyKey: 'e2e-1' } });
    expect(again.runTask.id).toBe(runTask.id);

    // One query, four subgraphs: task → agent (agent) → owner (auth), sessions (memory), tasks (task).
    const { task } = await alice.client.data(
      `query ($id: ID!) { task(id: $id) { id status
          agent { name owner { email } sessions { totalCount edges { node { title messages(first: 2) { totalCount edges { node { role content } } pageInfo { hasNextPage } } } } }
                  tasks { totalCount edges { node { id } } } }
          session { id title } } }`,
      { id: runTask.id },
    );
    expect(task.agent.name).toBe('Researcher');
    expect(task.agent.owner.email).toBe(alice.user.email);
    expect(task.agent.sessions.totalCount).toBe(1);
    expect(task.agent.sessions.edges[0].node.messages).toEqual({
      totalCount: 3,
      edges: [{ node: { role: 'USER', content: 'Hello' } }, { node: { role: 'ASSISTANT', content: 'Hi! How can I help?' } }],
      pageInfo: { hasNextPage: true },
    });
    expect(task.agent.tasks).toEqual({ totalCount: 1, edges: [{ node: { id: runTask.id } }] });
    expect(task.session).toEqual({ id: sessionId, title: 'First chat' });

    const { cancelTask } = await alice.client.data(`mutation ($id: ID!) { cancelTask(id: $id) { status finishedAt } }`, { id: runTask.id });
    expect(cancelTask.status).toBe('CANCELLED');

    const { agents } = await alice.client.data(`{ agents(first: 10) { totalCount edges { cursor node { id } } pageInfo { hasNextPage endCursor } } }`);
    expect(agents.edges.map((e: { node: { id: string } }) => e.node.id)).toContain(agentId);
    const { sessions } = await alice.client.data(`query ($a: ID) { sessions(agentId: $a) { totalCount edges { node { id } } } }`, { a: agentId });
    expect(sessions.totalCount).toBe(1);

    expect((await alice.client.data(`mutation ($id: ID!) { deleteSession(id: $id) }`, { id: sessionId })).deleteSession).toBe(true);
    expect((await alice.client.data(`mutation ($id: ID!) { deleteAgent(id: $id) }`, { id: agentId })).deleteAgent).toBe(true);
    expect((await alice.client.data(`query ($id: ID!) { agent(id: $id) { id } }`, { id: agentId })).agent).toBeNull();

    // A deleted agent takes no new work, but the history that ran on it still shows it.
    const late = await alice.client.request(`mutation ($a: ID!) { runTask(input: { agentId: $a, input: "more" }) { id } }`, { a: agentId });
    expect(errorCodes(late)).toEqual(['NOT_FOUND']);
    expect(errorCodes(await alice.client.request(`mutation ($a: ID!) { createSession(agentId: $a) { id } }`, { a: agentId }))).toEqual(['NOT_FOUND']);
    const history = await alice.client.data(`query ($id: ID!) { task(id: $id) { agent { name deletedAt } } }`, { id: runTask.id });
    expect(history.task.agent.name).toBe('Researcher');
    expect(history.task.agent.deletedAt).toBeTruthy();
  });
});

describe('isolation', () => {
  it("probes every operation of the contract as another user and anonymously: nothing leaks", async () => {
    const agentId = (await alice.client.data(`mutation { createAgent(input: { name: "Private", provider: "echo", model: "m" }) { id } }`)).createAgent.id;
    const sessionId = (await alice.client.data(`mutation ($a: ID!) { createSession(agentId: $a, title: "secret") { id } }`, { a: agentId })).createSession.id;
    const messageId = (await alice.client.data(`mutation ($s: ID!) { appendMessage(sessionId: $s, role: USER, content: "my secret") { id } }`, { s: sessionId })).appendMessage.id;
    const taskId = (await alice.client.data(`mutation ($a: ID!, $s: ID) { runTask(input: { agentId: $a, sessionId: $s, input: "secret work" }) { id } }`, { a: agentId, s: sessionId })).runTask.id;
    const keyId = (await alice.client.data(`mutation { createApiKey(name: "mine") { apiKey { id } } }`)).createApiKey.apiKey.id;
    const ids = { agentId, sessionId, taskId, keyId, messageId, userId: alice.user.id };

    // [operation, what "invisible" looks like for another user]
    const probes: [string, (r: any) => void][] = [
      [`query ($agentId: ID!) { agent(id: $agentId) { id } }`, (r) => expect(r.data.agent).toBeNull()],
      [`{ agents { totalCount edges { node { id } } } }`, (r) => expect(JSON.stringify(r.data)).not.toContain(agentId)],
      [`query ($sessionId: ID!) { session(id: $sessionId) { id } }`, (r) => expect(r.data.session).toBeNull()],
      [`query ($agentId: ID) { sessions(agentId: $agentId) { totalCount } }`, (r) => expect(r.data.sessions.totalCount).toBe(0)],
      [`query ($taskId: ID!) { task(id: $taskId) { id } }`, (r) => expect(r.data.task).toBeNull()],
      [`query ($agentId: ID) { tasks(agentId: $agentId) { totalCount } }`, (r) => expect(r.data.tasks.totalCount).toBe(0)],
      [`{ apiKeys { id } }`, (r) => expect(JSON.stringify(r.data)).not.toContain(keyId)],
      [`{ me { id } }`, (r) => expect(JSON.stringify(r.data ?? {})).not.toContain(alice.user.id)],
      [`mutation ($agentId: ID!) { updateAgent(id: $agentId, input: { name: "pwned" }) { id } }`, (r) => expect(errorCodes(r)).toEqual(['NOT_FOUND'])],
      [`mutation ($agentId: ID!) { deleteAgent(id: $agentId) }`, (r) => expect(r.data.deleteAgent).toBe(false)],
      [`mutation ($agentId: ID!) { createSession(agentId: $agentId) { id } }`, (r) => expect(errorCodes(r)).toEqual(['NOT_FOUND'])],
      [`mutation ($sessionId: ID!) { appendMessage(sessionId: $sessionId, role: USER, content: "x") { id } }`, (r) => expect(errorCodes(r)).toEqual(['NOT_FOUND'])],
      [`mutation ($sessionId: ID!) { deleteSession(id: $sessionId) }`, (r) => expect(r.data.deleteSession).toBe(false)],
      [`mutation ($agentId: ID!) { runTask(input: { agentId: $agentId, input: "x" }) { id } }`, (r) => expect(errorCodes(r)).toEqual(['NOT_FOUND'])],
      [`mutation ($taskId: ID!) { cancelTask(id: $taskId) { id } }`, (r) => expect(errorCodes(r)).toEqual(['NOT_FOUND'])],
      [`mutation ($keyId: ID!) { revokeApiKey(id: $keyId) { id } }`, (r) => expect(errorCodes(r)).toEqual(['NOT_FOUND'])],
    ];
    let count = 0;
    for (const [query, invisible] of probes) {
      const asBob = await bob.client.request(query, ids);
      invisible(asBob);
      expect(JSON.stringify(asBob)).not.toMatch(/secret|Private/);
      const anonymous = await new Client(platform.url).request(query, ids);
      if (query.startsWith('{ me')) expect(anonymous.data?.me ?? null).toBeNull();
      else expect(errorCodes(anonymous), query).toContain('UNAUTHENTICATED');
      count += 2;
    }

    // Entity references through the router: `_entities` is not part of the public API schema.
    const entities = await bob.client.request(`query ($r: [_Any!]!) { _entities(representations: $r) { ... on Agent { id } } }`, { r: [{ __typename: 'Agent', id: agentId }] });
    expect(errorCodes(entities)).toContain('GRAPHQL_VALIDATION_FAILED');

    // Alice's objects are untouched.
    const mine = await alice.client.data(`query ($agentId: ID!, $sessionId: ID!, $taskId: ID!) { agent(id: $agentId) { name } session(id: $sessionId) { messages { totalCount } } task(id: $taskId) { status } }`, ids);
    expect(mine).toEqual({ agent: { name: 'Private' }, session: { messages: { totalCount: 1 } }, task: { status: 'QUEUED' } });
    expect(count).toBe(probes.length * 2);
  });

  it('subgraphs reached directly, without the router, answer UNAUTHENTICATED', async () => {
    for (const [name, base] of Object.entries(platform.subgraphs)) {
      for (const headers of <Record<string, string>[]>[{}, { 'x-principal-proof': 'forged' }, { 'x-user-id': alice.user.id }, { authorization: `Bearer ${alice.accessToken}` }]) {
        const response = await postGraphQL(`${base}/graphql`, `query ($r: [_Any!]!) { _entities(representations: $r) { __typename } }`, { r: [{ __typename: 'Agent', id: randomUUID() }] }, headers);
        expect(response.status, name).toBe(401);
        expect(errorCodes(response), name).toEqual(['UNAUTHENTICATED']);
      }
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
    }
  });

  it('drops identity headers that arrive from outside', async () => {
    const spoofed = await new Client(platform.url).request('{ agents { totalCount } }', {}, { 'x-principal-proof': 'x', 'x-user-id': alice.user.id });
    expect(errorCodes(spoofed)).toEqual(['UNAUTHENTICATED']);
  });
});

describe('health', () => {
  it('answers /healthz and /readyz on the router and every subgraph', async () => {
    for (const base of [platform.routerBase, ...Object.values(platform.subgraphs)]) {
      expect((await fetch(`${base}/healthz`)).status, base).toBe(200);
      expect((await fetch(`${base}/readyz`)).status, base).toBe(200);
    }
  });
});
