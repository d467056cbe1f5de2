import { randomUUID } from 'node:crypto';
import { createClient, type Client as WsClient } from 'graphql-ws';
import pg from 'pg';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signUp } from '../support/client.js';
import { errorCodes } from '../support/graphql.js';
import { startFakeOpenAi } from '../support/fake-openai.js';
import { startPlatform, type Platform } from '../support/platform.js';

/**
 * Task execution end to end: the router, the four subgraphs and two workers as separate processes
 * on the real PostgreSQL, Redis and RabbitMQ; tasks run on the echo provider and on an
 * OpenAI-compatible endpoint (a local server speaking its wire format, through the real SDK);
 * a graphql-ws client watches them stream through the router.
 */
let platform: Platform;
let fakeOpenAi: Awaited<ReturnType<typeof startFakeOpenAi>>;
let alice: Awaited<ReturnType<typeof signUp>>;
let bob: Awaited<ReturnType<typeof signUp>>;
let db: pg.Client;
const sockets: WsClient[] = [];

beforeAll(async () => {
  fakeOpenAi = await startFakeOpenAi({ chunkDelayMs: 40 });
  platform = await startPlatform('e2e_tasks', {
    workers: 2,
    rabbitmq: true,
    env: {
      RATE_LIMIT_AUTH_PER_MINUTE: '1000',
      OPENAI_BASE_URL: fakeOpenAi.baseUrl,
      OPENAI_API_KEY: 'test-key',
      ECHO_TOKEN_DELAY_MS: '5',
      TASK_LEASE_MS: '2000',
      TASK_MAX_ATTEMPTS: '3',
    },
  });
  const suffix = randomUUID().slice(0, 8);
  [alice, bob] = await Promise.all([signUp(platform.url, `alice-${suffix}@example.com`), signUp(platform.url, `bob-${suffix}@example.com`)]);
  db = new pg.Client({ connectionString: platform.env.DATABASE_URL });
  await db.connect();
}, 180_000);

afterAll(async () => {
  for (const socket of sockets) await socket.dispose();
  await db?.end();
  await platform?.stop();
  await fakeOpenAi?.close();
});

function subscriber(token: string): WsClient {
  const client = createClient({
    url: platform.url.replace(/^http/, 'ws'),
    webSocketImpl: WebSocket,
    connectionParams: { authorization: `Bearer ${token}` },
    retryAttempts: 0,
    lazy: false,
  });
  sockets.push(client);
  return client;
}

interface Event {
  sequence: number;
  type: string;
  delta: string | null;
  attempt: number;
  task?: { status: string; output: string | null; agent?: { name: string }; session?: { id: string } | null };
}

/** Subscribes and collects every event until completion (or an error). */
async function collect(token: string, taskId: string, afterSequence?: number, selection = 'sequence type delta attempt'): Promise<{ events: Event[]; errors: unknown[] }> {
  const events: Event[] = [];
  const errors: unknown[] = [];
  const iterator = subscriber(token).iterate<{ taskEvents: Event }>({
    query: `subscription ($id: ID!, $after: Int) { taskEvents(taskId: $id, afterSequence: $after) { ${selection} } }`,
    variables: { id: taskId, after: afterSequence ?? null },
  });
  try {
    for await (const result of iterator) {
      if (result.errors) errors.push(...result.errors);
      if (result.data) events.push(result.data.taskEvents);
    }
  } catch (error) {
    errors.push(error);
  }
  return { events, errors };
}

/** The text a client shows: the deltas of the last attempt that STARTED. */
function textOf(events: Event[]): string {
  let text = '';
  for (const event of events) {
    if (event.type === 'STARTED') text = '';
    if (event.type === 'TOKEN') text += event.delta ?? '';
  }
  return text;
}

function expectCoherent(events: Event[], from = 1) {
  expect(events.map((e) => e.sequence)).toEqual(events.map((_, i) => from + i));
  expect(['SUCCEEDED', 'FAILED', 'CANCELLED']).toContain(events.at(-1)?.type);
  expect(events.filter((e) => ['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(e.type))).toHaveLength(1);
}

async function createAgent(client: typeof alice.client, input: Record<string, unknown>): Promise<string> {
  return (await client.data(`mutation ($i: CreateAgentInput!) { createAgent(input: $i) { id } }`, { i: input })).createAgent.id;
}

async function runTask(client: typeof alice.client, input: Record<string, unknown>): Promise<{ id: string; status: string }> {
  return (await client.data(`mutation ($i: RunTaskInput!) { runTask(input: $i) { id status } }`, { i: input })).runTask;
}

async function taskState(client: typeof alice.client, id: string) {
  return (await client.data(`query ($id: ID!) { task(id: $id) { status output error attempts usage { promptTokens completionTokens totalTokens } startedAt finishedAt } }`, { id })).task;
}

describe('running tasks', () => {
  it('streams an echo task token by token through the router and completes with the output', async () => {
    const agentId = await createAgent(alice.client, { name: 'Echo', provider: 'echo', model: 'echo-1' });
    const task = await runTask(alice.client, { agentId, input: 'stream me some words please' });
    expect(task.status).toBe('QUEUED');
    const { events, errors } = await collect(alice.accessToken, task.id, undefined, 'sequence type delta attempt task { status output agent { name } }');
    expect(errors).toEqual([]);
    expectCoherent(events);
    expect(events[0].type).toBe('QUEUED');
    expect(events.some((e) => e.type === 'STARTED' && e.attempt === 1)).toBe(true);
    expect(events.filter((e) => e.type === 'TOKEN').length).toBeGreaterThan(0);
    const last = events.at(-1)!;
    expect(last.type).toBe('SUCCEEDED');
    expect(last.task?.agent?.name).toBe('Echo');
    expect(last.task?.status).toBe('SUCCEEDED');
    const state = await taskState(alice.client, task.id);
    expect(state.status).toBe('SUCCEEDED');
    expect(state.output).toContain('stream me some words please');
    expect(textOf(events)).toBe(state.output);
    expect(last.task?.output).toBe(state.output);
    expect(state.usage.totalTokens).toBe(state.usage.promptTokens + state.usage.completionTokens);
    expect(state.attempts).toBe(1);

    // The worker that ran it counted it, and its time from submission to the end.
    const scrapes = await Promise.all(platform.workers.map(async (w) => (await fetch(`${w.healthBase}/metrics`)).text()));
    const succeeded = scrapes.map((text) => Number(/^tasks_finished_total\{status="SUCCEEDED",service="worker"\} (\d+)/m.exec(text)?.[1] ?? 0));
    expect(succeeded.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(1);
    expect(scrapes.join('\n')).toMatch(/^task_duration_seconds_count\{service="worker",status="SUCCEEDED"\} [1-9]/m);
    expect(scrapes.every((text) => /^tasks_running\{service="worker"\} \d+/m.test(text))).toBe(true);
  });

  it('keeps a session: input and answer appended once, and the next task gets the history as context', async () => {
    const agentId = await createAgent(alice.client, { name: 'Chatty', provider: 'openai', model: 'gpt-4o-mini', systemPrompt: 'You are terse.' });
    const sessionId = (await alice.client.data(`mutation ($a: ID!) { createSession(agentId: $a) { id } }`, { a: agentId })).createSession.id;
    const first = await runTask(alice.client, { agentId, sessionId, input: 'My name is Ada.' });
    const firstRun = await collect(alice.accessToken, first.id);
    expectCoherent(firstRun.events);
    expect(firstRun.events.at(-1), JSON.stringify(firstRun.events.at(-1))).toMatchObject({ type: "SUCCEEDED" });
    expect(textOf(firstRun.events)).toBe('You said: My name is Ada.');

    // The memory service appends the turn when task.succeeded reaches it over RabbitMQ.
    const messagesOf = async () =>
      (await alice.client.data(`query ($s: ID!) { session(id: $s) { messages { totalCount edges { node { role content task { id } } } } } }`, { s: sessionId })).session.messages;
    let messages = await messagesOf();
    for (let i = 0; i < 50 && messages.totalCount < 2; i++) {
      await new Promise((r) => setTimeout(r, 100));
      messages = await messagesOf();
    }
    expect(messages.edges.map((e: any) => [e.node.role, e.node.content, e.node.task?.id])).toEqual([
      ['USER', 'My name is Ada.', first.id],
      ['ASSISTANT', 'You said: My name is Ada.', first.id],
    ]);

    const second = await runTask(alice.client, { agentId, sessionId, input: 'What is my name?' });
    const secondRun = await collect(alice.accessToken, second.id);
    expect(secondRun.events.at(-1)!.type).toBe('SUCCEEDED');
    const request = fakeOpenAi.requests.at(-1)!;
    expect(request.model).toBe('gpt-4o-mini');
    expect(request.messages).toEqual([
      { role: 'system', content: 'You are terse.' },
      { role: 'user', content: 'My name is Ada.' },
      { role: 'assistant', content: 'You said: My name is Ada.' },
      { role: 'user', content: 'What is my name?' },
    ]);
    for (let i = 0; i < 50 && (await messagesOf()).totalCount < 4; i++) await new Promise((r) => setTimeout(r, 100));
    expect((await messagesOf()).totalCount).toBe(4);
  });

  it('replays from afterSequence mid-way and after completion, without gaps or duplicates', async () => {
    const agentId = await createAgent(alice.client, { name: 'Replay', provider: 'echo', model: 'echo-1' });
    const task = await runTask(alice.client, { agentId, input: 'one two three four five six seven eight' });
    const full = await collect(alice.accessToken, task.id);
    expectCoherent(full.events);
    const middle = Math.floor(full.events.length / 2);
    const resumed = await collect(alice.accessToken, task.id, middle);
    expect(resumed.events).toEqual(full.events.slice(middle));
    const afterEnd = await collect(alice.accessToken, task.id, full.events.length);
    expect(afterEnd.events).toEqual([]);
    expect(afterEnd.errors).toEqual([]);
    // The archive in PostgreSQL holds the same events (replay after the live log expires).
    const archived = await alice.client.data(`query ($id: ID!) { task(id: $id) { events { sequence type delta attempt } } }`, { id: task.id });
    expect(archived.task.events).toEqual(full.events);
  });

  it('runs a task once per idempotency key', async () => {
    const agentId = await createAgent(alice.client, { name: 'Once', provider: 'echo', model: 'echo-1' });
    const key = randomUUID();
    const tasks = await Promise.all(Array.from({ length: 5 }, () => runTask(alice.client, { agentId, input: 'only once', idempotencyKey: key })));
    expect(new Set(tasks.map((t) => t.id)).size).toBe(1);
    const { events } = await collect(alice.accessToken, tasks[0].id);
    expect(events.filter((e) => e.type === 'SUCCEEDED')).toHaveLength(1);
    const { rows } = await db.query(`select count(*)::int as n from task.tasks where idempotency_key = $1`, [key]);
    expect(rows[0].n).toBe(1);
  });

  it('cancels a streaming task within a second', async () => {
    const agentId = await createAgent(alice.client, { name: 'Slow', provider: 'openai', model: 'gpt-4o-mini' });
    const task = await runTask(alice.client, { agentId, input: Array.from({ length: 200 }, (_, i) => `word${i}`).join(' ') });
    const events: Event[] = [];
    const done = (async () => {
      for await (const result of subscriber(alice.accessToken).iterate<{ taskEvents: Event }>({
        query: `subscription ($id: ID!) { taskEvents(taskId: $id) { sequence type delta attempt } }`,
        variables: { id: task.id },
      })) {
        if (result.data) events.push(result.data.taskEvents);
      }
    })();
    while (events.filter((e) => e.type === 'TOKEN').length < 3) await new Promise((r) => setTimeout(r, 20));
    const requestedAt = Date.now();
    const { cancelTask } = await alice.client.data(`mutation ($id: ID!) { cancelTask(id: $id) { status } }`, { id: task.id });
    expect(cancelTask.status).toBe('CANCELLED');
    await done;
    expect(Date.now() - requestedAt).toBeLessThan(1000);
    expectCoherent(events);
    expect(events.at(-1)!.type).toBe('CANCELLED');
    // The worker stopped: no success afterwards, and the task stays CANCELLED.
    await new Promise((r) => setTimeout(r, 500));
    const state = await taskState(alice.client, task.id);
    expect(state.status).toBe('CANCELLED');
    expect(state.output).toBeNull();
  });

  it("keeps another user out of a task's stream and state", async () => {
    const agentId = await createAgent(alice.client, { name: 'Mine', provider: 'echo', model: 'echo-1' });
    const task = await runTask(alice.client, { agentId, input: 'private' });
    const intruder = await collect(bob.accessToken, task.id);
    expect(intruder.events).toEqual([]);
    expect(JSON.stringify(intruder.errors)).toContain('NOT_FOUND');
    expect((await bob.client.data(`query ($id: ID!) { task(id: $id) { id } }`, { id: task.id })).task).toBeNull();
    expect(errorCodes(await bob.client.request(`mutation ($id: ID!) { cancelTask(id: $id) { id } }`, { id: task.id }))).toEqual(['NOT_FOUND']);
    const own = await collect(alice.accessToken, task.id);
    expect(own.events.at(-1)!.type).toBe('SUCCEEDED');
  });

  it('survives a worker killed mid-stream: another finishes the task once, and the stream stays coherent', async () => {
    const agentId = await createAgent(alice.client, { name: 'Survivor', provider: 'openai', model: 'gpt-4o-mini' });
    const task = await runTask(alice.client, { agentId, input: Array.from({ length: 60 }, (_, i) => `w${i}`).join(' ') });
    const events: Event[] = [];
    const done = (async () => {
      for await (const result of subscriber(alice.accessToken).iterate<{ taskEvents: Event }>({
        query: `subscription ($id: ID!) { taskEvents(taskId: $id) { sequence type delta attempt } }`,
        variables: { id: task.id },
      })) {
        if (result.data) events.push(result.data.taskEvents);
      }
    })();
    while (events.filter((e) => e.type === 'TOKEN').length < 5) await new Promise((r) => setTimeout(r, 20));
    const { rows } = await db.query(`select worker_id from task.tasks where id = $1`, [task.id]);
    const victim = platform.workers.find((w) => w.workerId === rows[0].worker_id)!;
    expect(victim).toBeDefined();
    victim.process.child.kill('SIGKILL');
    await platform.startWorker(); // a replacement, as an orchestrator would start
    await done;
    expectCoherent(events);
    expect(events.at(-1)!.type).toBe('SUCCEEDED');
    expect(events.some((e) => e.type === 'STARTED' && e.attempt === 2)).toBe(true);
    const state = await taskState(alice.client, task.id);
    expect(state.status).toBe('SUCCEEDED');
    expect(state.attempts).toBe(2);
    expect(textOf(events)).toBe(state.output);
    const { rows: succeeded } = await db.query(`select count(*)::int as n from task.task_events where task_id = $1 and type = 'SUCCEEDED'`, [task.id]);
    expect(succeeded[0].n).toBeLessThanOrEqual(1);
  }, 60_000);
});
