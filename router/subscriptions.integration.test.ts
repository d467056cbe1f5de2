import { randomBytes, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { createClient, type Client, type FormattedExecutionResult } from 'graphql-ws';
import { Redis } from 'ioredis';
import jwt from 'jsonwebtoken';
import pg from 'pg';
import { pino, type Logger } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { generateJwtKeyPair } from '../lib/jwt-keys.js';
import { createBroker } from '../lib/messaging/index.js';
import type { MessageBroker } from '../lib/messaging/types.js';
import type { RunningServer } from '../lib/subgraph-server.js';
import { createMemoryTaskEventLog } from '../lib/task-events/memory.js';
import { createTaskEventLog } from '../lib/task-events/index.js';
import type { TaskEvent, TaskEventLog, TaskEventType } from '../lib/task-events/types.js';
import { startAgentSubgraph } from '../subgraphs/agent/server.js';
import { startAuthSubgraph } from '../subgraphs/auth/server.js';
import { startMemorySubgraph } from '../subgraphs/memory/server.js';
import { startTaskSubgraph } from '../subgraphs/task/server.js';
import { createTestDatabase, TEST_INTERNAL_SECRET } from '../tests/support/database.js';
import { postGraphQL } from '../tests/support/graphql.js';
import { routerConfigFromEnv } from './config.js';
import { startRouter } from './server.js';

/**
 * The real router in front of the four real subgraphs (in this process, on free ports, one test
 * database), driven with the graphql-ws client and raw sockets. No worker runs here: the tests play
 * it, appending to the shared task event log and updating the task's row, once with the in-memory
 * log (`npm start`) and once with Redis (every replica and worker share it).
 */
const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const KEYS = generateJwtKeyPair();
const JWT = { issuer: 'agent-platform', audience: 'agent-platform-api' };
const PASSWORD = 'correct horse battery staple';

/** Counts the router's fetches to a subgraph by operation name (the gateway names them `<operation>__<subgraph>__<n>`). */
interface CountingProxy {
  url: string;
  operations: string[];
  count(prefix: string): number;
  close(): Promise<void>;
}

async function countingProxy(target: string): Promise<CountingProxy> {
  const operations: string[] = [];
  const server: Server = createServer(async (req, res) => {
    try {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      const body = Buffer.concat(chunks);
      if (req.method === 'POST' && req.url?.startsWith('/graphql')) {
        operations.push(String((JSON.parse(body.toString()) as { operationName?: unknown }).operationName ?? ''));
      }
      const headers: Record<string, string> = {};
      for (const [name, value] of Object.entries(req.headers)) {
        if (typeof value === 'string' && !['host', 'connection', 'content-length', 'keep-alive'].includes(name)) headers[name] = value;
      }
      const response = await fetch(`${target}${req.url}`, { method: req.method, headers, body: req.method === 'GET' || req.method === 'HEAD' ? undefined : body });
      const answer = Buffer.from(await response.arrayBuffer());
      res.writeHead(response.status, { 'content-type': response.headers.get('content-type') ?? 'application/json' });
      res.end(answer);
    } catch {
      res.writeHead(502).end();
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    operations,
    count: (prefix) => operations.filter((name) => name.startsWith(prefix)).length,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** Log lines the router wrote, parsed. */
function capturingLogger(): { log: Logger; lines: () => Record<string, unknown>[]; text: () => string } {
  const raw: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      raw.push(chunk.toString());
      done();
    },
  });
  return {
    log: pino({ level: 'info' }, stream),
    lines: () =>
      raw
        .join('')
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as Record<string, unknown>),
    text: () => raw.join(''),
  };
}

/** The event log as the router and the task service see it, with some tasks' live logs "expired". */
function expiringLog(inner: TaskEventLog, expired: Set<string>): TaskEventLog {
  return {
    append: (taskId, event, options) => inner.append(taskId, event, options),
    appendMany: (taskId, events, options) => inner.appendMany(taskId, events, options),
    read: async (taskId, after) => (expired.has(taskId) ? [] : inner.read(taskId, after)),
    lastSequence: async (taskId) => (expired.has(taskId) ? 0 : inner.lastSequence(taskId)),
    stream: (taskId, after, signal) => (expired.has(taskId) ? (async function* () {})() : inner.stream(taskId, after, signal)),
    subscribe: (taskId, listener) => inner.subscribe(taskId, listener),
    ping: () => inner.ping(),
    close: () => inner.close(),
  };
}

interface Stack {
  variant: 'memory' | 'redis';
  httpUrl: string;
  wsUrl: string;
  /** The worker's side of the event log. */
  worker: TaskEventLog;
  db: pg.Pool;
  agentProxy: CountingProxy;
  taskProxy: CountingProxy;
  routerLog: ReturnType<typeof capturingLogger>;
  /** Makes a task's live log disappear, as when it expires. */
  expire(taskId: string): Promise<void>;
  /** Starts another router on the same subgraphs and log (closed by the caller). */
  anotherRouter(log?: Logger, env?: Record<string, string>): Promise<RunningServer>;
  stop(): Promise<void>;
}

async function startStack(variant: 'memory' | 'redis'): Promise<Stack> {
  const stops: (() => Promise<unknown>)[] = [];
  const stop = async () => {
    while (stops.length) await stops.pop()!().catch(() => undefined);
  };
  try {
    const database = await createTestDatabase(`subs${variant}`);
    stops.push(database.drop);
    const common = { port: 0, databaseUrl: database.url, internalSecret: TEST_INTERNAL_SECRET, logLevel: 'silent' };
    const silent = pino({ level: 'silent' });
    const broker: MessageBroker = await createBroker({ log: silent });
    stops.push(() => broker.close());

    const prefix = `test:subs:${randomBytes(4).toString('hex')}:`;
    const expired = new Set<string>();
    let worker: TaskEventLog;
    let shared: TaskEventLog | undefined;
    let redis: Redis | undefined;
    if (variant === 'memory') {
      const memory = createMemoryTaskEventLog();
      stops.push(() => memory.close());
      worker = memory;
      shared = expiringLog(memory, expired);
    } else {
      worker = createTaskEventLog({ redisUrl: REDIS_URL, prefix, log: silent });
      stops.push(() => worker.close());
      redis = new Redis(REDIS_URL);
      const client = redis;
      stops.push(async () => {
        // Every key this file made, the event log's and the rate limiter's, is under the prefix.
        const keys = await client.keys(`${prefix}*`);
        if (keys.length) await client.del(...keys);
        await client.quit();
      });
    }

    const agent = await startAgentSubgraph(common);
    stops.push(agent.close);
    const memory = await startMemorySubgraph({ ...common, agentUrl: agent.url }, { broker });
    stops.push(memory.close);
    const task = await startTaskSubgraph(
      { ...common, agentUrl: agent.url, memoryUrl: memory.url, ...(variant === 'redis' ? { redisUrl: REDIS_URL, eventsPrefix: prefix } : {}) },
      { broker, ...(shared ? { eventLog: shared } : {}) },
    );
    stops.push(task.close);
    const auth = await startAuthSubgraph({ ...common, jwtPrivateKey: KEYS.privateKey, jwt: JWT });
    stops.push(auth.close);
    const agentProxy = await countingProxy(agent.url);
    stops.push(agentProxy.close);
    const taskProxy = await countingProxy(task.url);
    stops.push(taskProxy.close);

    const env: Record<string, string> = {
      INTERNAL_SECRET: TEST_INTERNAL_SECRET,
      JWT_PUBLIC_KEY: KEYS.publicKey,
      AUTH_URL: auth.url,
      AGENT_URL: agentProxy.url,
      TASK_URL: taskProxy.url,
      MEMORY_URL: memory.url,
      PORT: '0',
      HOST: '127.0.0.1',
      LOG_LEVEL: 'silent',
      MAX_QUERY_DEPTH: '6',
      MAX_ALIASES: '8',
      WS_MAX_SUBSCRIPTIONS_PER_SOCKET: '3',
      WS_CONNECTION_INIT_TIMEOUT_MS: '500',
      ...(variant === 'redis' ? { REDIS_URL, EVENTS_PREFIX: prefix, RATE_LIMIT_PREFIX: `${prefix}rl:` } : {}),
    };
    const routerLog = capturingLogger();
    const start = (log: Logger, extraEnv: Record<string, string> = {}) =>
      startRouter(routerConfigFromEnv({ ...env, ...extraEnv }), { log, ...(shared ? { eventLog: shared } : {}) });
    const router = await start(routerLog.log);
    stops.push(router.close);

    const db = new pg.Pool({ connectionString: database.url, max: 2 });
    stops.push(() => db.end());
    return {
      variant,
      httpUrl: `${router.url}/graphql`,
      wsUrl: `${router.url.replace(/^http/, 'ws')}/graphql`,
      worker,
      db,
      agentProxy,
      taskProxy,
      routerLog,
      async expire(taskId) {
        if (redis) await redis.del(`${prefix}task:{${taskId}}:state`, `${prefix}task:{${taskId}}:events`);
        else expired.add(taskId);
      },
      anotherRouter: (log = silent, extraEnv = {}) => start(log, extraEnv),
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

const disposers: (() => unknown)[] = [];
afterEach(async () => {
  while (disposers.length) await disposers.pop()!();
});

async function until(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

interface Closed {
  code: number;
  reason: string;
}

/** A graphql-ws client (lazy: false, no retries); `closed` resolves with the first close event. */
function connect(url: string, connectionParams?: Record<string, unknown>, webSocketImpl: unknown = WebSocket): { client: Client; closed: Promise<Closed> } {
  let resolveClosed!: (closed: Closed) => void;
  const closed = new Promise<Closed>((resolve) => (resolveClosed = resolve));
  const client = createClient({
    url,
    webSocketImpl,
    connectionParams,
    lazy: false,
    retryAttempts: 0,
    onNonLazyError: () => undefined,
    on: {
      closed: (event) => {
        const { code, reason } = event as { code: number; reason: string };
        resolveClosed({ code, reason: String(reason) });
      },
    },
  });
  disposers.push(() => client.dispose());
  return { client, closed };
}

type Result = FormattedExecutionResult<Record<string, any>, unknown>;

/** One subscription's results, errors and completion. */
interface Collected {
  results: Result[];
  data: () => any[];
  error?: any;
  completed: boolean;
  /** Resolves when the subscription completes or errors. */
  ended: Promise<void>;
  stop: () => void;
}

function collect(client: Client, query: string, variables?: Record<string, unknown>): Collected {
  let resolveEnded!: () => void;
  const collected: Collected = {
    results: [],
    data: () => collected.results.map((result) => result.data),
    completed: false,
    ended: new Promise((resolve) => (resolveEnded = resolve)),
    stop: () => undefined,
  };
  collected.stop = client.subscribe<Record<string, any>>(
    { query, variables },
    {
      next: (result) => void collected.results.push(result),
      error: (error) => {
        collected.error = error;
        resolveEnded();
      },
      complete: () => {
        collected.completed = true;
        resolveEnded();
      },
    },
  );
  return collected;
}

/** A socket that speaks graphql-transport-ws by hand, for what the client library will not do. */
async function rawSocket(url: string): Promise<{ socket: WebSocket; messages: any[]; closed: Promise<Closed> }> {
  const socket = new WebSocket(url, 'graphql-transport-ws');
  const messages: any[] = [];
  socket.on('message', (data) => messages.push(JSON.parse(String(data))));
  const closed = new Promise<Closed>((resolve) => socket.on('close', (code, reason) => resolve({ code, reason: String(reason) })));
  disposers.push(() => socket.terminate());
  await once(socket, 'open');
  return { socket, messages, closed };
}

describe.each(['memory', 'redis'] as const)('subscriptions through the router (%s event log)', (variant) => {
  let stack: Stack;
  let alice: { token: string; id: string };
  let bob: { token: string; id: string };

  async function signUp(name: string) {
    const answer = await postGraphQL(stack.httpUrl, 'mutation ($email: String!, $password: String!, $name: String) { signUp(email: $email, password: $password, name: $name) { accessToken user { id } } }', {
      email: `${name}-${randomUUID()}@example.com`,
      password: PASSWORD,
      name,
    });
    expect(answer.errors).toBeUndefined();
    return { token: answer.data.signUp.accessToken as string, id: answer.data.signUp.user.id as string };
  }

  async function gql(token: string, query: string, variables: Record<string, unknown> = {}) {
    const answer = await postGraphQL(stack.httpUrl, query, variables, { authorization: `Bearer ${token}` });
    expect(answer.errors, JSON.stringify(answer.errors)).toBeUndefined();
    return answer.data;
  }

  /** A fresh agent, session and task of `owner`, QUEUED and with its QUEUED event logged. */
  async function queuedTask(owner = alice): Promise<{ taskId: string; agentId: string; sessionId: string }> {
    const { createAgent } = await gql(owner.token, 'mutation ($input: CreateAgentInput!) { createAgent(input: $input) { id } }', {
      input: { name: 'Helper', provider: 'echo', model: 'echo-1' },
    });
    const { createSession } = await gql(owner.token, 'mutation ($agentId: ID!) { createSession(agentId: $agentId, title: "Chat") { id } }', { agentId: createAgent.id });
    const { runTask } = await gql(owner.token, 'mutation ($input: RunTaskInput!) { runTask(input: $input) { id status } }', {
      input: { agentId: createAgent.id, sessionId: createSession.id, input: 'Say hello' },
    });
    expect(runTask.status).toBe('QUEUED');
    // The task service's outbox relay appends QUEUED; the worker's events follow it.
    await until(async () => (await stack.worker.lastSequence(runTask.id)) >= 1, 'the QUEUED event');
    return { taskId: runTask.id, agentId: createAgent.id, sessionId: createSession.id };
  }

  /** The worker's side: the task row first, then the event (as the real worker commits before it publishes). */
  async function emit(taskId: string, type: TaskEventType, attempt = 1, delta: string | null = null): Promise<TaskEvent> {
    if (type === 'STARTED') {
      await stack.db.query(`update task.tasks set status = 'RUNNING', attempts = $2, started_at = now(), updated_at = now() where id = $1`, [taskId, attempt]);
    } else if (type === 'SUCCEEDED' || type === 'FAILED' || type === 'CANCELLED') {
      const output = type === 'SUCCEEDED' ? (await stack.worker.read(taskId, 0)).filter((e) => e.type === 'TOKEN' && e.attempt === attempt).map((e) => e.delta).join('') : null;
      await stack.db.query(`update task.tasks set status = $2, output = $3, error = $4, finished_at = now(), updated_at = now() where id = $1`, [
        taskId,
        type,
        output,
        type === 'FAILED' ? delta : null,
      ]);
    }
    const event = await stack.worker.append(taskId, { type, attempt, delta });
    expect(event).not.toBeNull();
    return event!;
  }

  async function runToSuccess(taskId: string, deltas: string[]): Promise<void> {
    await emit(taskId, 'STARTED');
    for (const delta of deltas) await emit(taskId, 'TOKEN', 1, delta);
    await emit(taskId, 'SUCCEEDED');
  }

  const EVENTS = 'subscription ($id: ID!, $after: Int) { taskEvents(taskId: $id, afterSequence: $after) { sequence type delta attempt } }';

  beforeAll(async () => {
    stack = await startStack(variant);
    alice = await signUp('alice');
    bob = await signUp('bob');
  }, 120_000);
  afterAll(async () => {
    await stack?.stop();
  });

  it('streams a task from QUEUED to SUCCEEDED with fields of every subgraph, fetched only when its state changes', async () => {
    const { taskId, sessionId } = await queuedTask();
    const { client } = connect(stack.wsUrl, { authorization: `Bearer ${alice.token}` });
    const before = { task: stack.taskProxy.count('TaskEventTask__'), agent: stack.agentProxy.count('TaskEventTask__') };
    const sub = collect(
      client,
      `subscription Progress($id: ID!) {
        event: taskEvents(taskId: $id) {
          __typename
          seq: sequence
          ...Kind
          job: task { __typename state: status output ... on Task { agent { name } session { id } } }
        }
      }
      fragment Kind on TaskEvent { type text: delta attempt }`,
      { id: taskId },
    );
    await until(() => sub.results.length === 1, 'the QUEUED event');
    await emit(taskId, 'STARTED');
    await until(() => sub.results.length === 2, 'the STARTED event');
    const deltas = Array.from({ length: 20 }, (_, i) => `tok${i} `);
    for (const delta of deltas) await emit(taskId, 'TOKEN', 1, delta);
    await until(() => sub.results.length === 22, 'the tokens');
    await emit(taskId, 'SUCCEEDED');
    await sub.ended;

    expect(sub.error).toBeUndefined();
    expect(sub.completed).toBe(true);
    const events = sub.data().map((data) => data.event);
    expect(events.map((event) => event.seq)).toEqual(Array.from({ length: 23 }, (_, i) => i + 1));
    expect(events.map((event) => event.type)).toEqual(['QUEUED', 'STARTED', ...deltas.map(() => 'TOKEN'), 'SUCCEEDED']);
    expect(events.map((event) => event.text ?? '').join('')).toBe(deltas.join(''));
    expect(events[0]).toMatchObject({ __typename: 'TaskEvent', job: { __typename: 'Task', state: 'QUEUED', output: null, agent: { name: 'Helper' }, session: { id: sessionId } } });
    expect(new Set(events.slice(1, 22).map((event) => event.job.state))).toEqual(new Set(['RUNNING']));
    expect(events[22].job).toMatchObject({ state: 'SUCCEEDED', output: deltas.join('') });

    // Three states (first event, STARTED, SUCCEEDED): three fetches, not one per token.
    expect(stack.taskProxy.count('TaskEventTask__') - before.task).toBe(3);
    expect(stack.agentProxy.count('TaskEventTask__') - before.agent).toBe(3);

    const lines = stack.routerLog.lines().filter((line) => line.subscriptionId !== undefined && line.taskId === taskId);
    expect(lines.map((line) => line.msg)).toEqual(['subscription started', 'subscription ended']);
    expect(lines[1]).toMatchObject({ principal: alice.id, eventsSent: 23, reason: 'completed' });
    expect(typeof lines[1].durationMs).toBe('number');
    expect(stack.routerLog.text()).not.toContain(alice.token);
  });

  it('replays after afterSequence, mid-way while live and after completion', async () => {
    const live = await queuedTask();
    await emit(live.taskId, 'STARTED');
    await emit(live.taskId, 'TOKEN', 1, 'a');
    const { client } = connect(stack.wsUrl, { authorization: `Bearer ${alice.token}` });
    const resumed = collect(client, EVENTS, { id: live.taskId, after: 2 });
    await until(() => resumed.results.length === 1, 'the replayed token');
    await emit(live.taskId, 'TOKEN', 1, 'b');
    await emit(live.taskId, 'SUCCEEDED');
    await resumed.ended;
    expect(resumed.data().map((data) => [data.taskEvents.sequence, data.taskEvents.delta])).toEqual([
      [3, 'a'],
      [4, 'b'],
      [5, null],
    ]);

    const done = await queuedTask();
    await runToSuccess(done.taskId, ['x', 'y', 'z']);
    const after3 = collect(client, EVENTS, { id: done.taskId, after: 3 });
    await after3.ended;
    expect(after3.completed).toBe(true);
    expect(after3.data().map((data) => data.taskEvents.sequence)).toEqual([4, 5, 6]);
    const afterLast = collect(client, EVENTS, { id: done.taskId, after: 6 });
    await afterLast.ended;
    expect(afterLast.completed).toBe(true);
    expect(afterLast.results).toEqual([]);
    const fromStart = collect(client, EVENTS, { id: done.taskId });
    await fromStart.ended;
    expect(fromStart.data().map((data) => data.taskEvents.type)).toEqual(['QUEUED', 'STARTED', 'TOKEN', 'TOKEN', 'TOKEN', 'SUCCEEDED']);
  });

  it('passes a new attempt through and refetches the task when it starts', async () => {
    const { taskId } = await queuedTask();
    const { client } = connect(stack.wsUrl, { authorization: `Bearer ${alice.token}` });
    const sub = collect(client, 'subscription ($id: ID!) { taskEvents(taskId: $id) { type attempt delta task { attempts status } } }', { id: taskId });
    await until(() => sub.results.length === 1, 'QUEUED');
    await emit(taskId, 'STARTED', 1);
    await emit(taskId, 'TOKEN', 1, 'lost');
    await until(() => sub.results.length === 3, 'the first attempt');
    await emit(taskId, 'STARTED', 2);
    await emit(taskId, 'TOKEN', 2, 'kept');
    await until(() => sub.results.length === 5, 'the second attempt');
    await emit(taskId, 'SUCCEEDED', 2);
    await sub.ended;
    expect(sub.data().map((data) => [data.taskEvents.type, data.taskEvents.attempt, data.taskEvents.task.attempts])).toEqual([
      ['QUEUED', 1, 0],
      ['STARTED', 1, 1],
      ['TOKEN', 1, 1],
      ['STARTED', 2, 2],
      ['TOKEN', 2, 2],
      ['SUCCEEDED', 2, 2],
    ]);
  });

  it('replays a finished task from the task service\'s archive once its live log has expired', async () => {
    const { taskId } = await queuedTask();
    await runToSuccess(taskId, ['arch', 'ived']);
    const events = await stack.worker.read(taskId, 0);
    for (const event of events) {
      await stack.db.query(`insert into task.task_events (task_id, sequence, type, attempt, delta, at) values ($1, $2, $3, $4, $5, $6) on conflict do nothing`, [
        taskId,
        event.sequence,
        event.type,
        event.attempt,
        event.delta,
        event.at,
      ]);
    }
    await stack.expire(taskId);
    const archiveFetches = stack.taskProxy.count('TaskEventArchive__');
    const { client } = connect(stack.wsUrl, { authorization: `Bearer ${alice.token}` });
    const sub = collect(client, 'subscription ($id: ID!, $after: Int) { taskEvents(taskId: $id, afterSequence: $after) { sequence type delta task { status } } }', {
      id: taskId,
      after: 2,
    });
    await sub.ended;
    expect(sub.error).toBeUndefined();
    expect(sub.completed).toBe(true);
    expect(sub.data().map((data) => [data.taskEvents.sequence, data.taskEvents.type, data.taskEvents.delta, data.taskEvents.task.status])).toEqual([
      [3, 'TOKEN', 'arch', 'SUCCEEDED'],
      [4, 'TOKEN', 'ived', 'SUCCEEDED'],
      [5, 'SUCCEEDED', null, 'SUCCEEDED'],
    ]);
    expect(stack.taskProxy.count('TaskEventArchive__') - archiveFetches).toBe(1);
  });

  it('answers NOT_FOUND for another user\'s task, sending none of its events', async () => {
    const { taskId } = await queuedTask(alice);
    const { client } = connect(stack.wsUrl, { authorization: `Bearer ${bob.token}` });
    const sub = collect(client, EVENTS, { id: taskId });
    await sub.ended;
    await emit(taskId, 'STARTED');
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(sub.results).toEqual([]);
    expect(sub.error).toEqual([expect.objectContaining({ message: 'Task not found.', extensions: { code: 'NOT_FOUND' } })]);

    const notUuid = collect(client, EVENTS, { id: 'task-1' });
    await notUuid.ended;
    expect(notUuid.error[0].extensions.code).toBe('NOT_FOUND');
    const negative = collect(client, EVENTS, { id: taskId, after: -1 });
    await negative.ended;
    expect(negative.error[0].extensions.code).toBe('BAD_USER_INPUT');
  });

  it('authenticates sockets from connectionParams or the upgrade headers and refuses anonymous and bad credentials', async () => {
    const anonymous = connect(stack.wsUrl);
    expect(await anonymous.closed).toMatchObject({ code: 4401, reason: expect.stringContaining('Authentication required') });
    const forged = connect(stack.wsUrl, { authorization: 'Bearer not.a.token' });
    expect(await forged.closed).toMatchObject({ code: 4401, reason: 'The access token is invalid.' });
    const badKey = connect(stack.wsUrl, { 'x-api-key': 'ak_nope' });
    expect(await badKey.closed).toMatchObject({ code: 4401 });

    const { taskId } = await queuedTask();
    const { createApiKey } = await gql(alice.token, 'mutation { createApiKey(name: "ws") { secret } }');
    class WithHeaders extends WebSocket {
      constructor(url: string, protocols?: string | string[]) {
        super(url, protocols, { headers: { authorization: `Bearer ${alice.token}` } });
      }
    }
    for (const [params, impl] of [
      [{ token: alice.token }, WebSocket],
      [{ 'x-api-key': createApiKey.secret }, WebSocket],
      [undefined, WithHeaders],
    ] as const) {
      const { client } = connect(stack.wsUrl, params, impl);
      const sub = collect(client, EVENTS, { id: taskId });
      await until(() => sub.results.length === 1 || sub.error !== undefined, 'the first event');
      expect(sub.error).toBeUndefined();
      expect(sub.data()[0].taskEvents.type).toBe('QUEUED');
    }
  });

  it('checks the socket\'s credential again on every subscribe: an expired access token opens nothing new', async () => {
    const { taskId } = await queuedTask();
    const shortLived = jwt.sign({ sub: alice.id }, KEYS.privateKey, { algorithm: 'RS256', issuer: JWT.issuer, audience: JWT.audience, expiresIn: 1 });
    const { client } = connect(stack.wsUrl, { authorization: `Bearer ${shortLived}` });
    const before = collect(client, EVENTS, { id: taskId });
    await until(() => before.results.length === 1, 'the first event');
    await new Promise((resolve) => setTimeout(resolve, 2100));
    const after = collect(client, EVENTS, { id: taskId });
    await after.ended;
    expect(after.error[0]).toMatchObject({ extensions: { code: 'UNAUTHENTICATED' }, message: expect.stringContaining('expired') });
    // What was already running goes on until it ends.
    await emit(taskId, 'STARTED');
    await until(() => before.results.length === 2, 'the next event');
  });

  it('applies the HTTP operation limits, refuses queries, and bounds the subscriptions of a socket', async () => {
    const { taskId } = await queuedTask();
    const { client } = connect(stack.wsUrl, { authorization: `Bearer ${alice.token}` });
    const refused = async (query: string) => {
      const sub = collect(client, query, { id: taskId });
      await sub.ended;
      return sub;
    };
    const deep = await refused('subscription ($id: ID!) { taskEvents(taskId: $id) { task { events { task { events { task { id } } } } } } }');
    const aliases = await refused(`subscription ($id: ID!) { taskEvents(taskId: $id) { ${Array.from({ length: 9 }, (_, i) => `a${i}: sequence`).join(' ')} } }`);
    const query = await refused('query ($id: ID!) { task(id: $id) { id } }');
    const invalid = await refused('subscription ($id: ID!) { taskEvents(taskId: $id) { nope } }');
    expect(deep.error[0].extensions.code).toBe('OPERATION_TOO_COMPLEX');
    expect(aliases.error[0].extensions.code).toBe('OPERATION_TOO_COMPLEX');
    expect(query.error[0]).toMatchObject({ extensions: { code: 'BAD_REQUEST' }, message: expect.stringContaining('HTTP POST') });
    expect(invalid.error[0].extensions.code).toBe('GRAPHQL_VALIDATION_FAILED');

    // The limit is 3 per socket here: the fourth is refused, the three go on.
    const running = [1, 2, 3].map(() => collect(client, EVENTS, { id: taskId }));
    await until(() => running.every((sub) => sub.results.length === 1), 'three subscriptions');
    const extra = collect(client, EVENTS, { id: taskId });
    await extra.ended;
    expect(extra.error[0]).toMatchObject({ extensions: { code: 'RATE_LIMITED' } });
    await emit(taskId, 'STARTED');
    await until(() => running.every((sub) => sub.results.length === 2), 'the next event on the three');
    // Completing one frees its place.
    running[0].stop();
    await new Promise((resolve) => setTimeout(resolve, 100));
    const again = collect(client, EVENTS, { id: taskId, after: 1 });
    await until(() => again.results.length > 0 || again.error !== undefined, 'an answer');
    expect(again.error).toBeUndefined();
  });

  it('closes sockets that break the protocol: no connection_init (4408), a duplicate id (4409), an oversized message (1009)', async () => {
    const silent = await rawSocket(stack.wsUrl);
    expect((await silent.closed).code).toBe(4408);

    const { taskId } = await queuedTask();
    const duplicate = await rawSocket(stack.wsUrl);
    duplicate.socket.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${alice.token}` } }));
    await until(() => duplicate.messages.some((message) => message.type === 'connection_ack'), 'the acknowledgement');
    const subscribe = JSON.stringify({ id: 'same', type: 'subscribe', payload: { query: EVENTS, variables: { id: taskId } } });
    duplicate.socket.send(subscribe);
    await until(() => duplicate.messages.some((message) => message.type === 'next'), 'the first event');
    duplicate.socket.send(subscribe);
    expect((await duplicate.closed).code).toBe(4409);

    const big = await rawSocket(stack.wsUrl);
    big.socket.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${alice.token}`, padding: 'x'.repeat(70 * 1024) } }));
    expect((await big.closed).code).toBe(1009);
  });

  it('drops sockets that stop answering pings, and keeps those that answer', async () => {
    const other = await stack.anotherRouter(undefined, { WS_KEEP_ALIVE_MS: '200' });
    disposers.push(() => other.close());
    const url = `${other.url.replace(/^http/, 'ws')}/graphql`;
    const open = (autoPong: boolean) => {
      const socket = new WebSocket(url, 'graphql-transport-ws', { autoPong });
      disposers.push(() => socket.terminate());
      socket.on('open', () => socket.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${alice.token}` } })));
      return { socket, closed: new Promise<number>((resolve) => socket.on('close', (code) => resolve(code))) };
    };
    const silent = open(false);
    const healthy = open(true);
    expect(await silent.closed).toBe(1006);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(healthy.socket.readyState).toBe(WebSocket.OPEN);
  });

  it('closes subscription sockets with 1001 when a router stops, while the HTTP side and the other routers go on', async () => {
    const otherLog = capturingLogger();
    const other = await stack.anotherRouter(otherLog.log);
    let closed = false;
    disposers.push(() => (closed ? undefined : other.close()));
    const { taskId } = await queuedTask();
    const { client, closed: socketClosed } = connect(`${other.url.replace(/^http/, 'ws')}/graphql`, { authorization: `Bearer ${alice.token}` });
    const sub = collect(client, EVENTS, { id: taskId });
    await until(() => sub.results.length === 1, 'the first event');
    await other.close();
    closed = true;
    expect((await socketClosed).code).toBe(1001);
    await until(() => otherLog.lines().some((line) => line.msg === 'subscription ended'), 'the end of the subscription in the log');
    expect(otherLog.lines().find((line) => line.msg === 'subscription ended')).toMatchObject({ taskId, eventsSent: 1, reason: 'socket closed 1001' });

    // The client resumes on another replica where it left off.
    const { client: again } = connect(stack.wsUrl, { authorization: `Bearer ${alice.token}` });
    const resumed = collect(again, EVENTS, { id: taskId, after: sub.results.length });
    await emit(taskId, 'STARTED');
    await emit(taskId, 'SUCCEEDED');
    await resumed.ended;
    expect(resumed.data().map((data) => data.taskEvents.type)).toEqual(['STARTED', 'SUCCEEDED']);
    const overHttp = await postGraphQL(stack.httpUrl, EVENTS, { id: taskId }, { authorization: `Bearer ${alice.token}` });
    expect(overHttp.status).toBe(400);
    expect(overHttp.errors?.[0]).toMatchObject({ extensions: { code: 'BAD_REQUEST' }, message: expect.stringContaining('WebSocket') });
    const me = await gql(alice.token, '{ me { id } }');
    expect(me.me.id).toBe(alice.id);
    const ready = await fetch(stack.httpUrl.replace(/\/graphql$/, '/readyz'));
    expect(((await ready.json()) as { checks: Record<string, boolean> }).checks.events).toBe(true);
  });
});
