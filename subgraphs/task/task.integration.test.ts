import { randomUUID } from 'node:crypto';
import { parse } from 'graphql';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../lib/logger.js';
import { ownerOf } from '../../lib/principal.js';
import { startSubgraphServer, type BaseContext } from '../../lib/subgraph-server.js';
import { createTestDatabase, TEST_INTERNAL_SECRET } from '../../tests/support/database.js';
import { asAnonymous, asApiKey, asUser, errorCodes, postGraphQL } from '../../tests/support/graphql.js';
import { startAgentSubgraph } from '../agent/server.js';
import { startTaskSubgraph } from './server.js';
import { providerConfigFromEnv } from './providers/registry.js';

const alice = randomUUID();
const bob = randomUUID();
let taskUrl: string;
let agentUrl: string;
let db: pg.Pool;
const disposers: (() => Promise<void>)[] = [];

/**
 * Stands in for the memory service (written in parallel): a federated Session entity whose
 * reference resolver, like the real one, shows a session only to its owner.
 */
const sessions = new Map<string, { ownerId: string; agentId: string }>();
async function startMemoryStandIn() {
  return startSubgraphServer<BaseContext>({
    name: 'memory-stand-in',
    port: 0,
    typeDefs: parse(`
      extend schema @link(url: "https://specs.apollo.dev/federation/v2.7", import: ["@key"])
      type Agent @key(fields: "id", resolvable: false) { id: ID! }
      type Session @key(fields: "id") { id: ID! agent: Agent! }
    `),
    resolvers: {
      Session: {
        __resolveReference: ({ id }: { id: string }, { principal }: BaseContext) => {
          const session = sessions.get(id);
          return session && session.ownerId === ownerOf(principal) ? { id, agentId: session.agentId } : null;
        },
        agent: (session: { agentId: string }) => ({ id: session.agentId }),
      },
    },
    internalSecret: TEST_INTERNAL_SECRET,
    log: createLogger('memory-stand-in', 'silent'),
    createContext: (base) => base,
  });
}

beforeAll(async () => {
  const database = await createTestDatabase('task');
  disposers.push(database.drop);
  const agent = await startAgentSubgraph({ port: 0, databaseUrl: database.url, internalSecret: TEST_INTERNAL_SECRET, logLevel: 'silent' });
  disposers.unshift(agent.close);
  const memory = await startMemoryStandIn();
  disposers.unshift(memory.close);
  const task = await startTaskSubgraph({
    port: 0,
    databaseUrl: database.url,
    internalSecret: TEST_INTERNAL_SECRET,
    agentUrl: agent.url,
    memoryUrl: memory.url,
    // As the workers would run: OpenAI configured, Anthropic not.
    providers: providerConfigFromEnv({ OPENAI_API_KEY: 'sk-test' }),
    logLevel: 'silent',
  });
  disposers.unshift(task.close);
  taskUrl = `${task.url}/graphql`;
  agentUrl = `${agent.url}/graphql`;
  db = new pg.Pool({ connectionString: database.url, max: 2 });
  disposers.unshift(() => db.end());
});
afterAll(async () => {
  for (const dispose of disposers) await dispose();
});

const TASK_FIELDS = `id status input attempts output error usage { promptTokens completionTokens totalTokens }
  provider model systemPrompt temperature maxTokens idempotencyKey agent { id } session { id }
  createdAt startedAt finishedAt updatedAt`;
const RUN = `mutation ($input: RunTaskInput!) { runTask(input: $input) { ${TASK_FIELDS} } }`;
const CANCEL = `mutation ($id: ID!) { cancelTask(id: $id) { ${TASK_FIELDS} } }`;
const TASK = `query ($id: ID!) { task(id: $id) { ${TASK_FIELDS} } }`;
const ENTITIES = `query ($r: [_Any!]!) { _entities(representations: $r) { ... on Task { id status agent { id } } } }`;

const run = (owner: string, input: Record<string, unknown>) => postGraphQL(taskUrl, RUN, { input }, asUser(owner));

async function createAgent(owner: string, input: Record<string, unknown> = {}): Promise<{ id: string; [field: string]: unknown }> {
  const response = await postGraphQL(
    agentUrl,
    `mutation ($input: CreateAgentInput!) { createAgent(input: $input) { id provider model systemPrompt temperature maxTokens } }`,
    { input: { name: 'helper', provider: 'echo', model: 'echo-1', ...input } },
    asUser(owner),
  );
  expect(response.errors).toBeUndefined();
  return response.data.createAgent;
}

async function updateAgent(owner: string, id: string, input: Record<string, unknown>): Promise<void> {
  const response = await postGraphQL(agentUrl, `mutation ($id: ID!, $input: UpdateAgentInput!) { updateAgent(id: $id, input: $input) { id } }`, { id, input }, asUser(owner));
  expect(response.errors).toBeUndefined();
}

async function runOk(owner: string, input: Record<string, unknown>) {
  const response = await run(owner, input);
  expect(response.errors).toBeUndefined();
  return response.data.runTask;
}

async function outboxOf(taskId: string): Promise<{ topic: string; payload: Record<string, unknown>; published_at: Date | null }[]> {
  const { rows } = await db.query(`select topic, payload, published_at from task.outbox where task_id = $1 order by id`, [taskId]);
  return rows;
}

describe('runTask', () => {
  it('queues a task on the caller\'s agent with a snapshot that later agent changes do not touch', async () => {
    const agent = await createAgent(alice, { provider: 'openai', model: 'gpt-4o-mini', systemPrompt: 'Be brief.', temperature: 0.3, maxTokens: 256 });
    const task = await runOk(alice, { agentId: agent.id, input: '  What is 2 + 2?  ' });
    expect(task).toMatchObject({
      status: 'QUEUED',
      input: 'What is 2 + 2?',
      attempts: 0,
      output: null,
      error: null,
      usage: null,
      provider: 'openai',
      model: 'gpt-4o-mini',
      systemPrompt: 'Be brief.',
      temperature: 0.3,
      maxTokens: 256,
      idempotencyKey: null,
      agent: { id: agent.id },
      session: null,
      startedAt: null,
      finishedAt: null,
    });
    expect(new Date(task.createdAt).getTime()).toBeGreaterThan(Date.now() - 60_000);

    await updateAgent(alice, agent.id, { model: 'gpt-4o', systemPrompt: 'Be verbose.', temperature: 1.5, maxTokens: null });
    const read = await postGraphQL(taskUrl, TASK, { id: task.id }, asUser(alice));
    expect(read.data.task).toEqual(task);

    // The next task takes the agent as it is now.
    const next = await runOk(alice, { agentId: agent.id, input: 'again' });
    expect(next).toMatchObject({ model: 'gpt-4o', systemPrompt: 'Be verbose.', temperature: 1.5, maxTokens: null });
  });

  it('writes the task.submitted outbox message in the same transaction as the task', async () => {
    const agent = await createAgent(alice);
    const task = await runOk(alice, { agentId: agent.id, input: 'hello' });
    const messages = await outboxOf(task.id);
    // The relay of this subgraph publishes it at once (to the in-process broker here).
    expect(messages.map(({ topic, payload }) => ({ topic, payload }))).toEqual([{ topic: 'task.submitted', payload: { taskId: task.id, attempts: 0 } }]);
  });

  it('queues many tasks sent at once, each with its own row, input and outbox message', async () => {
    const [mine, bobs] = [await createAgent(alice), await createAgent(bob)];
    const calls = Array.from({ length: 30 }, (_, i) => (i % 3 === 2 ? run(bob, { agentId: bobs.id, input: `bob ${i}` }) : run(alice, { agentId: mine.id, input: `alice ${i}` })));
    const responses = await Promise.all(calls);
    const tasks = responses.map((response) => {
      expect(response.errors).toBeUndefined();
      return response.data.runTask;
    });
    expect(new Set(tasks.map((task) => task.id)).size).toBe(30);
    tasks.forEach((task, i) => expect(task).toMatchObject({ input: i % 3 === 2 ? `bob ${i}` : `alice ${i}`, status: 'QUEUED', agent: { id: i % 3 === 2 ? bobs.id : mine.id } }));
    for (const task of tasks) expect((await outboxOf(task.id)).map((m) => m.payload)).toEqual([{ taskId: task.id, attempts: 0 }]);
  });

  it('answers NOT_FOUND for agents the caller does not own or that do not exist', async () => {
    const bobs = await createAgent(bob);
    for (const agentId of [bobs.id, randomUUID(), 'not-a-uuid']) {
      const response = await run(alice, { agentId, input: 'hi' });
      expect(errorCodes(response), agentId).toEqual(['NOT_FOUND']);
      expect(response.errors![0].message).toBe('Agent not found.');
    }
    const { rows } = await db.query(`select count(*)::int as n from task.tasks where agent_id = $1`, [bobs.id]);
    expect(rows[0].n).toBe(0);
  });

  it('refuses PAUSED and ARCHIVED agents and providers no worker runs', async () => {
    const agent = await createAgent(alice);
    for (const status of ['PAUSED', 'ARCHIVED']) {
      await updateAgent(alice, agent.id, { status });
      const response = await run(alice, { agentId: agent.id, input: 'hi' });
      expect(errorCodes(response)).toEqual(['BAD_USER_INPUT']);
      expect(response.errors![0].message).toBe(`Agent is ${status}: make it ACTIVE to run tasks.`);
    }
    await updateAgent(alice, agent.id, { status: 'ACTIVE' });
    expect((await run(alice, { agentId: agent.id, input: 'hi' })).errors).toBeUndefined();

    // The agent service only accepts known providers; one that a later version dropped can still be stored.
    await db.query(`update agent.agents set provider = 'retired-llm' where id = $1`, [agent.id]);
    const retired = await run(alice, { agentId: agent.id, input: 'hi' });
    expect(errorCodes(retired)).toEqual(['BAD_USER_INPUT']);
    expect(retired.errors![0].message).toContain('retired-llm');

    // A provider the platform has no key for is refused at once, saying what to set.
    await db.query(`update agent.agents set provider = 'anthropic' where id = $1`, [agent.id]);
    const unconfigured = await run(alice, { agentId: agent.id, input: 'hi' });
    expect(errorCodes(unconfigured)).toEqual(['BAD_USER_INPUT']);
    expect(unconfigured.errors![0].message).toContain('ANTHROPIC_API_KEY');
  });

  it('refuses bad input with BAD_USER_INPUT naming the field', async () => {
    const agent = await createAgent(alice);
    const cases: [Record<string, unknown>, string][] = [
      [{ agentId: agent.id, input: '' }, 'input'],
      [{ agentId: agent.id, input: '   ' }, 'input'],
      [{ agentId: agent.id, input: 'x'.repeat(100_001) }, 'input'],
      [{ agentId: agent.id, input: 'ok', idempotencyKey: '' }, 'idempotencyKey'],
      [{ agentId: agent.id, input: 'ok', idempotencyKey: 'k'.repeat(201) }, 'idempotencyKey'],
    ];
    for (const [input, field] of cases) {
      const response = await run(alice, input);
      expect(errorCodes(response), JSON.stringify(input).slice(0, 80)).toEqual(['BAD_USER_INPUT']);
      expect(response.errors![0].extensions!.field).toBe(field);
    }
    expect((await run(alice, { agentId: agent.id, input: 'x'.repeat(100_000) })).errors).toBeUndefined();
  });

  it('checks that the session is the caller\'s and belongs to the agent', async () => {
    const agent = await createAgent(alice);
    const otherAgent = await createAgent(alice);
    const own = randomUUID();
    const bobs = randomUUID();
    const ofOtherAgent = randomUUID();
    sessions.set(own, { ownerId: alice, agentId: agent.id });
    sessions.set(bobs, { ownerId: bob, agentId: agent.id });
    sessions.set(ofOtherAgent, { ownerId: alice, agentId: otherAgent.id });

    const task = await runOk(alice, { agentId: agent.id, sessionId: own, input: 'remember me' });
    expect(task.session).toEqual({ id: own });
    expect((await db.query(`select session_id from task.tasks where id = $1`, [task.id])).rows[0].session_id).toBe(own);

    for (const sessionId of [bobs, randomUUID(), 'not-a-uuid']) {
      const response = await run(alice, { agentId: agent.id, sessionId, input: 'hi' });
      expect(errorCodes(response), sessionId).toEqual(['NOT_FOUND']);
      expect(response.errors![0].message).toBe('Session not found.');
    }
    const mismatched = await run(alice, { agentId: agent.id, sessionId: ofOtherAgent, input: 'hi' });
    expect(errorCodes(mismatched)).toEqual(['BAD_USER_INPUT']);
    expect(mismatched.errors![0].extensions!.field).toBe('sessionId');
  });
});

describe('idempotency', () => {
  it('returns the same task for the same key and refuses the key for a different task', async () => {
    const agent = await createAgent(alice);
    const first = await runOk(alice, { agentId: agent.id, input: 'once', idempotencyKey: 'key-1' });
    expect(first.idempotencyKey).toBe('key-1');
    const again = await runOk(alice, { agentId: agent.id, input: 'once', idempotencyKey: 'key-1' });
    expect(again.id).toBe(first.id);

    const session = randomUUID();
    sessions.set(session, { ownerId: alice, agentId: agent.id });
    const otherAgent = await createAgent(alice);
    for (const changed of [{ input: 'twice' }, { sessionId: session }, { agentId: otherAgent.id }]) {
      const response = await run(alice, { agentId: agent.id, input: 'once', idempotencyKey: 'key-1', ...changed });
      expect(errorCodes(response), JSON.stringify(changed)).toEqual(['CONFLICT']);
      expect(response.errors![0].message).toBe('idempotencyKey was already used for a different task.');
    }

    // A retry is answered from the task even once the agent stopped taking new ones.
    await updateAgent(alice, agent.id, { status: 'PAUSED' });
    expect((await runOk(alice, { agentId: agent.id, input: 'once', idempotencyKey: 'key-1' })).id).toBe(first.id);

    // Keys belong to their owner: Bob's key-1 is another task.
    const bobs = await createAgent(bob);
    const bobTask = await runOk(bob, { agentId: bobs.id, input: 'once', idempotencyKey: 'key-1' });
    expect(bobTask.id).not.toBe(first.id);
  });

  it('creates one task and one outbox message when ten calls race with the same key', async () => {
    const agent = await createAgent(alice);
    const key = `race-${randomUUID()}`;
    const responses = await Promise.all(
      Array.from({ length: 10 }, () => run(alice, { agentId: agent.id, input: 'only once', idempotencyKey: key })),
    );
    for (const response of responses) expect(response.errors).toBeUndefined();
    const ids = new Set(responses.map((response) => response.data.runTask.id));
    expect(ids.size).toBe(1);
    const { rows } = await db.query(`select id from task.tasks where owner_id = $1 and idempotency_key = $2`, [alice, key]);
    expect(rows.map((row) => row.id)).toEqual([...ids]);
    expect(await outboxOf(rows[0].id)).toHaveLength(1);
  });
});

describe('cancelTask', () => {
  it('cancels a QUEUED task once and returns a finished one unchanged', async () => {
    const agent = await createAgent(alice);
    const task = await runOk(alice, { agentId: agent.id, input: 'stop me' });
    const cancelled = await postGraphQL(taskUrl, CANCEL, { id: task.id }, asUser(alice));
    expect(cancelled.errors).toBeUndefined();
    expect(cancelled.data.cancelTask).toMatchObject({ id: task.id, status: 'CANCELLED' });
    expect(cancelled.data.cancelTask.finishedAt).not.toBeNull();

    const again = await postGraphQL(taskUrl, CANCEL, { id: task.id }, asUser(alice));
    expect(again.data.cancelTask).toEqual(cancelled.data.cancelTask);
    expect((await outboxOf(task.id)).map((message) => message.topic)).toEqual(['task.submitted', 'task.cancelled']);
  });

  it('cancels a RUNNING task and leaves a SUCCEEDED one as it is', async () => {
    const agent = await createAgent(alice);
    const running = await runOk(alice, { agentId: agent.id, input: 'running' });
    await db.query(`update task.tasks set status = 'RUNNING', started_at = now(), attempts = 1 where id = $1`, [running.id]);
    const cancelled = await postGraphQL(taskUrl, CANCEL, { id: running.id }, asUser(alice));
    expect(cancelled.data.cancelTask).toMatchObject({ status: 'CANCELLED', attempts: 1 });

    const done = await runOk(alice, { agentId: agent.id, input: 'done' });
    await db.query(
      `update task.tasks set status = 'SUCCEEDED', output = '4', prompt_tokens = 10, completion_tokens = 1, total_tokens = 11,
         started_at = now(), finished_at = now() where id = $1`,
      [done.id],
    );
    const before = (await postGraphQL(taskUrl, TASK, { id: done.id }, asUser(alice))).data.task;
    expect(before).toMatchObject({ status: 'SUCCEEDED', output: '4', usage: { promptTokens: 10, completionTokens: 1, totalTokens: 11 } });
    const unchanged = await postGraphQL(taskUrl, CANCEL, { id: done.id }, asUser(alice));
    expect(unchanged.data.cancelTask).toEqual(before);
  });

  it("answers NOT_FOUND for another user's task and for ids that name none", async () => {
    const agent = await createAgent(alice);
    const task = await runOk(alice, { agentId: agent.id, input: 'mine' });
    for (const [id, caller] of [[task.id, bob], [randomUUID(), alice], ['not-a-uuid', alice]] as const) {
      const response = await postGraphQL(taskUrl, CANCEL, { id }, asUser(caller));
      expect(errorCodes(response), id).toEqual(['NOT_FOUND']);
      expect(response.errors![0].message).toBe('Task not found.');
    }
    expect((await postGraphQL(taskUrl, TASK, { id: task.id }, asUser(alice))).data.task.status).toBe('QUEUED');
  });
});

describe('reading tasks', () => {
  it('pages through the caller\'s tasks oldest first, by agent and by status', async () => {
    const owner = randomUUID();
    const one = await createAgent(owner);
    const two = await createAgent(owner);
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await runOk(owner, { agentId: i % 2 === 0 ? one.id : two.id, input: `task ${i}` })).id);
    await postGraphQL(taskUrl, CANCEL, { id: ids[3] }, asUser(owner));

    const seen: string[] = [];
    let after: string | null = null;
    for (;;) {
      const page: any = await postGraphQL(
        taskUrl,
        `query ($after: String) { tasks(first: 2, after: $after) { edges { cursor node { id } } pageInfo { hasNextPage endCursor } totalCount } }`,
        { after },
        asUser(owner),
      );
      expect(page.errors).toBeUndefined();
      expect(page.data.tasks.totalCount).toBe(5);
      seen.push(...page.data.tasks.edges.map((edge: any) => edge.node.id));
      if (!page.data.tasks.pageInfo.hasNextPage) break;
      after = page.data.tasks.pageInfo.endCursor;
    }
    expect(seen).toEqual(ids);

    const list = (args: string) => postGraphQL(taskUrl, `{ tasks(${args}) { totalCount edges { node { id } } } }`, {}, asUser(owner));
    expect((await list(`agentId: "${one.id}"`)).data.tasks).toEqual({ totalCount: 3, edges: [ids[0], ids[2], ids[4]].map((id) => ({ node: { id } })) });
    expect((await list('status: CANCELLED')).data.tasks).toEqual({ totalCount: 1, edges: [{ node: { id: ids[3] } }] });
    expect((await list(`agentId: "${one.id}", status: CANCELLED`)).data.tasks.totalCount).toBe(0);
    expect((await list(`agentId: "${two.id}", status: CANCELLED`)).data.tasks.totalCount).toBe(1);
    expect((await list('agentId: "not-a-uuid"')).data.tasks).toEqual({ totalCount: 0, edges: [] });
    expect(errorCodes(await list('first: 0'))).toEqual(['BAD_USER_INPUT']);
    expect(errorCodes(await list('first: 101'))).toEqual(['BAD_USER_INPUT']);
    expect(errorCodes(await list('after: "not-a-cursor"'))).toEqual(['BAD_USER_INPUT']);

    // Agent.tasks: the router resolves an agent from the agent service, then asks here for its tasks.
    const agentTasks = `query ($r: [_Any!]!) { _entities(representations: $r) { ... on Agent { id tasks(first: 2, status: QUEUED) { totalCount edges { node { id } } pageInfo { hasNextPage } } } } }`;
    const ofTwo = await postGraphQL(taskUrl, agentTasks, { r: [{ __typename: 'Agent', id: two.id }] }, asUser(owner));
    expect(ofTwo.errors).toBeUndefined();
    expect(ofTwo.data._entities).toEqual([{ id: two.id, tasks: { totalCount: 1, edges: [{ node: { id: ids[1] } }], pageInfo: { hasNextPage: false } } }]);
    const ofOne = await postGraphQL(taskUrl, agentTasks, { r: [{ __typename: 'Agent', id: one.id }] }, asUser(owner));
    expect(ofOne.data._entities[0].tasks).toEqual({ totalCount: 3, edges: [{ node: { id: ids[0] } }, { node: { id: ids[2] } }], pageInfo: { hasNextPage: true } });
    // Another user sees none of this agent's tasks.
    const asBob = await postGraphQL(taskUrl, agentTasks, { r: [{ __typename: 'Agent', id: one.id }] }, asUser(bob));
    expect(asBob.data._entities[0].tasks.totalCount).toBe(0);
  });

  it("keeps another user's tasks invisible through task, tasks and _entities", async () => {
    const agent = await createAgent(alice);
    const task = await runOk(alice, { agentId: agent.id, input: 'private' });

    expect((await postGraphQL(taskUrl, TASK, { id: task.id }, asUser(bob))).data.task).toBeNull();
    expect((await postGraphQL(taskUrl, TASK, { id: 'not-a-uuid' }, asUser(alice))).data.task).toBeNull();
    expect((await postGraphQL(taskUrl, TASK, { id: randomUUID() }, asUser(alice))).data.task).toBeNull();
    const bobsList = await postGraphQL(taskUrl, `{ tasks(first: 100) { edges { node { id } } } }`, {}, asUser(bob));
    expect(bobsList.data.tasks.edges.map((edge: any) => edge.node.id)).not.toContain(task.id);

    const representations = [
      { __typename: 'Task', id: task.id },
      { __typename: 'Task', id: 'not-a-uuid' },
      { __typename: 'Task', id: randomUUID() },
    ];
    const asOwner = await postGraphQL(taskUrl, ENTITIES, { r: representations }, asUser(alice));
    expect(asOwner.errors).toBeUndefined();
    expect(asOwner.data._entities).toEqual([{ id: task.id, status: 'QUEUED', agent: { id: agent.id } }, null, null]);
    expect((await postGraphQL(taskUrl, ENTITIES, { r: representations }, asUser(bob))).data._entities).toEqual([null, null, null]);
    expect((await postGraphQL(taskUrl, ENTITIES, { r: representations }, asAnonymous())).data._entities).toEqual([null, null, null]);
  });
});

describe('access', () => {
  it('refuses callers without the router proof, anonymous callers and keys without the scope', async () => {
    const agent = await createAgent(alice);
    const direct = await postGraphQL(taskUrl, `{ tasks { totalCount } }`);
    expect(direct.status).toBe(401);
    expect(errorCodes(direct)).toEqual(['UNAUTHENTICATED']);
    const forged = await postGraphQL(taskUrl, `{ tasks { totalCount } }`, {}, { 'x-principal-proof': 'eyJhbGciOiJub25lIn0.eyJrbmQiOiJ1c2VyIn0.' });
    expect(errorCodes(forged)).toEqual(['UNAUTHENTICATED']);

    expect(errorCodes(await postGraphQL(taskUrl, `{ tasks { totalCount } }`, {}, asAnonymous()))).toEqual(['UNAUTHENTICATED']);
    expect(errorCodes(await postGraphQL(taskUrl, RUN, { input: { agentId: agent.id, input: 'hi' } }, asAnonymous()))).toEqual(['UNAUTHENTICATED']);

    const readOnly = asApiKey(alice, ['tasks:read', 'agents:read']);
    expect((await postGraphQL(taskUrl, `{ tasks { totalCount } }`, {}, readOnly)).errors).toBeUndefined();
    const refused = await postGraphQL(taskUrl, RUN, { input: { agentId: agent.id, input: 'hi' } }, readOnly);
    expect(errorCodes(refused)).toEqual(['FORBIDDEN']);
    const task = await runOk(alice, { agentId: agent.id, input: 'hi' });
    expect(errorCodes(await postGraphQL(taskUrl, CANCEL, { id: task.id }, readOnly))).toEqual(['FORBIDDEN']);

    const writeOnly = asApiKey(alice, ['tasks:write']);
    expect(errorCodes(await postGraphQL(taskUrl, `{ tasks { totalCount } }`, {}, writeOnly))).toEqual(['FORBIDDEN']);
    const byKey = await postGraphQL(taskUrl, `mutation ($input: RunTaskInput!) { runTask(input: $input) { id status } }`, { input: { agentId: agent.id, input: 'by key' } }, writeOnly);
    expect(byKey.errors).toBeUndefined();
    expect(byKey.data.runTask.status).toBe('QUEUED');
  });

  it('answers health and readiness without a proof', async () => {
    const base = taskUrl.replace(/\/graphql$/, '');
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ checks: { database: true } });
  });
});
