import { randomUUID } from 'node:crypto';
import { buildSchema, graphql, GraphQLError, type ExecutionResult, type GraphQLSchema } from 'graphql';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { createMemoryTaskEventLog } from '../lib/task-events/memory.js';
import type { TaskEventLog } from '../lib/task-events/types.js';
import { DEFAULT_OPERATION_LIMITS } from './operation-limits.js';
import { SubscriptionExecutor, type Caller, type GatewayRequest, type StartedSubscription } from './subscription-executor.js';

/**
 * The executor without servers: the API schema is a small SDL shaped like the supergraph's, and
 * the "gateway" executes queries against it in-process, counting what it is asked.
 */
const SDL = `
  enum TaskStatus { QUEUED RUNNING SUCCEEDED FAILED CANCELLED }
  enum TaskEventType { QUEUED STARTED TOKEN SUCCEEDED FAILED CANCELLED }
  type Agent { id: ID! name: String! }
  type Task { id: ID! status: TaskStatus! output: String agent: Agent! events(afterSequence: Int = 0): [TaskEvent!]! }
  type TaskEvent { sequence: Int! type: TaskEventType! delta: String attempt: Int! at: String! task: Task! }
  type Query { task(id: ID!): Task }
  type Subscription { taskEvents(taskId: ID!, afterSequence: Int): TaskEvent! }
`;

const ALICE: Caller = { principal: { kind: 'user', userId: 'alice', scopes: [] }, requestId: 'r1', clientIp: '127.0.0.1' };
const BOB: Caller = { principal: { kind: 'user', userId: 'bob', scopes: [] }, requestId: 'r2', clientIp: '127.0.0.1' };

interface FakeTask {
  owner: string;
  status: string;
  output: string | null;
  agentName: string | null;
  archive?: { sequence: number; type: string; delta: string | null; attempt: number; at: string }[];
}

function fakeGateway(schema: GraphQLSchema) {
  const tasks = new Map<string, FakeTask>();
  const calls: GatewayRequest[] = [];
  const rootValue = {
    task: ({ id }: { id: string }, caller: Caller) => {
      const task = tasks.get(id);
      if (!task || !('userId' in caller.principal) || task.owner !== caller.principal.userId) return null;
      return {
        id,
        status: task.status,
        output: task.output,
        agent: () => {
          if (task.agentName === null) throw new GraphQLError('The agent service is unavailable; try again shortly.', { extensions: { code: 'SERVICE_UNAVAILABLE' } });
          return { id: 'a1', name: task.agentName };
        },
        events: () => task.archive ?? [],
      };
    },
  };
  return {
    tasks,
    calls,
    gateway: async (request: GatewayRequest, caller: Caller) => {
      calls.push(request);
      const result = await graphql({ schema, source: request.query, variableValues: request.variables, rootValue, contextValue: caller, operationName: request.operationName });
      return JSON.parse(JSON.stringify(result)) as { data?: Record<string, unknown> | null; errors?: { message: string; path?: (string | number)[]; extensions?: Record<string, unknown> }[] };
    },
  };
}

const disposers: (() => unknown)[] = [];
afterEach(async () => {
  while (disposers.length) await disposers.pop()!();
});

function setup(options: { eventLog?: TaskEventLog; limits?: Partial<typeof DEFAULT_OPERATION_LIMITS> } = {}) {
  const schema = buildSchema(SDL);
  const eventLog = options.eventLog ?? createMemoryTaskEventLog();
  const fake = fakeGateway(schema);
  const executor = new SubscriptionExecutor({
    eventLog,
    gateway: fake.gateway,
    limits: { ...DEFAULT_OPERATION_LIMITS, ...options.limits },
    log: pino({ level: 'silent' }),
    retryFailedFetchMs: 50,
  });
  executor.setSchema(schema);
  current = executor;
  disposers.push(() => executor.close(), () => eventLog.close());
  return { executor, eventLog, ...fake };
}

function isStarted(result: StartedSubscription | readonly GraphQLError[]): result is StartedSubscription {
  return 'args' in result;
}

let current: SubscriptionExecutor;

async function run(started: StartedSubscription | readonly GraphQLError[]): Promise<AsyncIterableIterator<ExecutionResult>> {
  if (!isStarted(started)) throw new Error(`refused: ${started.map((e) => e.message).join('; ')}`);
  const result = current.subscribe(started.args);
  if (!(Symbol.asyncIterator in result)) throw new Error(`not a stream: ${JSON.stringify(result)}`);
  disposers.push(() => {
    result.return?.(undefined);
    started.subscription.close();
  });
  return result;
}

async function take(stream: AsyncIterableIterator<ExecutionResult>, count: number): Promise<ExecutionResult[]> {
  const results: ExecutionResult[] = [];
  while (results.length < count) {
    const next = await stream.next();
    if (next.done) break;
    results.push(next.value);
  }
  return results;
}

const codes = (result: StartedSubscription | readonly GraphQLError[]) => (isStarted(result) ? [] : result.map((error) => error.extensions.code));

describe('SubscriptionExecutor', () => {
  it('streams events with aliases, fragments and __typename, fetching task once per state', async () => {
    const { executor, eventLog, tasks, calls } = setup();
    const id = randomUUID();
    tasks.set(id, { owner: 'alice', status: 'QUEUED', output: null, agentName: 'Helper' });
    await eventLog.append(id, { type: 'QUEUED', attempt: 0 });
    const query = `subscription S($id: ID!, $withAgent: Boolean!) {
      e: taskEvents(taskId: $id) { __typename n: sequence type ...Delta
        t: task { state: status ... on Task { agent @include(if: $withAgent) { ...AgentName } } } } }
      fragment Delta on TaskEvent { delta }
      fragment AgentName on Agent { label: name }`;
    const stream = await run(await executor.start('1', { query, variables: { id, withAgent: true } }, ALICE));

    const [queued] = await take(stream, 1);
    expect(queued).toEqual({ data: { e: { __typename: 'TaskEvent', n: 1, type: 'QUEUED', delta: null, t: { state: 'QUEUED', agent: { label: 'Helper' } } } } });

    tasks.get(id)!.status = 'RUNNING';
    await eventLog.append(id, { type: 'STARTED', attempt: 1 });
    for (const delta of ['Hel', 'lo', ' wor', 'ld']) await eventLog.append(id, { type: 'TOKEN', attempt: 1, delta });
    const rest = await take(stream, 5);
    tasks.get(id)!.status = 'SUCCEEDED';
    tasks.get(id)!.output = 'Hello world';
    await eventLog.append(id, { type: 'SUCCEEDED', attempt: 1 });
    rest.push(...(await take(stream, 10)));
    expect(rest.map((r) => (r.data as any).e.type)).toEqual(['STARTED', 'TOKEN', 'TOKEN', 'TOKEN', 'TOKEN', 'SUCCEEDED']);
    expect(rest.map((r) => (r.data as any).e.delta ?? '').join('')).toBe('Hello world');
    expect(rest.map((r) => (r.data as any).e.t.state)).toEqual(['RUNNING', 'RUNNING', 'RUNNING', 'RUNNING', 'RUNNING', 'SUCCEEDED']);
    expect(await stream.next()).toEqual({ done: true, value: undefined });

    const fetches = calls.filter((call) => call.operationName === 'TaskEventTask');
    // QUEUED (first event), STARTED and SUCCEEDED: never once per token.
    expect(fetches).toHaveLength(3);
    expect(fetches[0].query).toContain('t: task(id: $taskId)');
    expect(fetches[0].query).toContain('fragment AgentName on Agent');
    expect(fetches[0].query).not.toContain('fragment Delta');
    expect(fetches[0].variables).toEqual({ taskId: id, withAgent: true });
  });

  it('makes no gateway fetch for task when the client does not select it', async () => {
    const { executor, eventLog, tasks, calls } = setup();
    const id = randomUUID();
    tasks.set(id, { owner: 'alice', status: 'RUNNING', output: null, agentName: 'Helper' });
    await eventLog.appendMany(id, [{ type: 'QUEUED', attempt: 0 }, { type: 'STARTED', attempt: 1 }, { type: 'TOKEN', attempt: 1, delta: 'x' }]);
    const stream = await run(await executor.start('1', { query: `subscription { taskEvents(taskId: "${id}") { sequence delta } }` }, ALICE));
    expect(await take(stream, 3)).toHaveLength(3);
    expect(calls.map((call) => call.operationName)).toEqual(['TaskEventAuthorization']);
  });

  it('shares one fetch per state between subscribers of the same task, selection and principal', async () => {
    const { executor, eventLog, tasks, calls } = setup();
    const id = randomUUID();
    tasks.set(id, { owner: 'alice', status: 'QUEUED', output: null, agentName: 'Helper' });
    await eventLog.append(id, { type: 'QUEUED', attempt: 0 });
    const query = `subscription ($id: ID!) { taskEvents(taskId: $id) { sequence task { status } } }`;
    const streams = await Promise.all([1, 2, 3].map(async (n) => run(await executor.start(String(n), { query, variables: { id } }, ALICE))));
    await Promise.all(streams.map((stream) => take(stream, 1)));
    tasks.get(id)!.status = 'RUNNING';
    await eventLog.append(id, { type: 'STARTED', attempt: 1 });
    const started = await Promise.all(streams.map((stream) => take(stream, 1)));
    expect(started.map(([r]) => (r.data as any).taskEvents.task.status)).toEqual(['RUNNING', 'RUNNING', 'RUNNING']);
    expect(calls.filter((call) => call.operationName === 'TaskEventTask')).toHaveLength(2);
    // The three authorizations arrived together: one gateway call.
    expect(calls.filter((call) => call.operationName === 'TaskEventAuthorization')).toHaveLength(1);
    // One result group: each event is executed once for the three.
    expect(executor.shared.groups).toBe(1);
    const asKey: Caller = { ...ALICE, principal: { kind: 'api_key', userId: 'alice', apiKeyId: 'k1', scopes: [] } };
    const viaKey = await executor.start('4', { query, variables: { id } }, asKey);
    expect(executor.shared.groups).toBe(2);
    (viaKey as StartedSubscription).subscription.close();
    expect(executor.shared.groups).toBe(1);
  });

  it('refuses other users\' tasks, non-UUID ids and negative afterSequence before streaming', async () => {
    const { executor, tasks } = setup();
    const id = randomUUID();
    tasks.set(id, { owner: 'alice', status: 'QUEUED', output: null, agentName: 'Helper' });
    const query = 'subscription ($id: ID!, $after: Int) { taskEvents(taskId: $id, afterSequence: $after) { sequence } }';
    expect(codes(await executor.start('1', { query, variables: { id } }, BOB))).toEqual(['NOT_FOUND']);
    expect(codes(await executor.start('2', { query, variables: { id: 'not-a-uuid' } }, ALICE))).toEqual(['NOT_FOUND']);
    expect(codes(await executor.start('3', { query, variables: { id, after: -1 } }, ALICE))).toEqual(['BAD_USER_INPUT']);
    expect(codes(await executor.start('4', { query, variables: { id: 5 } }, ALICE))).toEqual(['NOT_FOUND']);
    expect(codes(await executor.start('5', { query, variables: { after: 1 } }, ALICE))).toEqual(['BAD_USER_INPUT']);
  });

  it('refuses bad documents with the codes HTTP uses', async () => {
    const { executor } = setup({ limits: { maxDepth: 4, maxAliases: 3 } });
    const id = randomUUID();
    const start = (query: string) => executor.start('1', { query }, ALICE);
    expect(codes(await start('subscription {'))).toEqual(['GRAPHQL_PARSE_FAILED']);
    expect(codes(await start(`subscription { taskEvents(taskId: "${id}") { nope } }`))).toEqual(['GRAPHQL_VALIDATION_FAILED']);
    expect(codes(await start(`subscription { taskEvents(taskId: "${id}") { task { events { task { id } } } } }`))).toEqual(['OPERATION_TOO_COMPLEX']);
    expect(codes(await start(`subscription { taskEvents(taskId: "${id}") { a: sequence b: sequence c: sequence d: sequence } }`))).toEqual(['OPERATION_TOO_COMPLEX']);
    expect(codes(await start(`subscription { taskEvents(taskId: "${id}") { ${'sequence '.repeat(2500)} } }`))).toEqual(['OPERATION_TOO_COMPLEX']);
    expect(codes(await start(`subscription ($skip: Boolean!) { taskEvents(taskId: "${id}") @skip(if: $skip) { sequence } }`))).toEqual(['BAD_REQUEST']);
    const query = await start(`query { task(id: "${id}") { id } }`);
    expect(codes(query)).toEqual(['BAD_REQUEST']);
    expect((query as GraphQLError[])[0].message).toMatch(/HTTP POST/);
    expect(codes(await start(`subscription A { taskEvents(taskId: "${id}") { sequence } } subscription B { taskEvents(taskId: "${id}") { type } }`))).toEqual([
      'OPERATION_RESOLUTION_FAILURE',
    ]);
  });

  it('replays a finished task from the archive once the live log has expired, then completes', async () => {
    const { executor, tasks, calls } = setup();
    const id = randomUUID();
    const at = new Date().toISOString();
    tasks.set(id, {
      owner: 'alice',
      status: 'SUCCEEDED',
      output: 'ab',
      agentName: 'Helper',
      archive: [
        { sequence: 1, type: 'QUEUED', delta: null, attempt: 0, at },
        { sequence: 2, type: 'STARTED', delta: null, attempt: 1, at },
        { sequence: 3, type: 'TOKEN', delta: 'a', attempt: 1, at },
        { sequence: 4, type: 'TOKEN', delta: 'b', attempt: 1, at },
        { sequence: 5, type: 'SUCCEEDED', delta: null, attempt: 1, at },
      ].filter((event) => event.sequence > 2),
    });
    const stream = await run(await executor.start('1', { query: `subscription { taskEvents(taskId: "${id}", afterSequence: 2) { sequence delta } }` }, ALICE));
    const results = await take(stream, 10);
    expect(results.map((r) => (r.data as any).taskEvents.sequence)).toEqual([3, 4, 5]);
    expect(calls.map((call) => call.operationName)).toEqual(['TaskEventAuthorization', 'TaskEventArchive']);
    expect(calls[1].variables).toEqual({ id, after: 2 });
  });

  it('waits for the final event of a task whose status says finished before its log does', async () => {
    // The worker commits SUCCEEDED, then appends the final event: a subscriber can come in between.
    const { executor, eventLog, tasks } = setup();
    const id = randomUUID();
    tasks.set(id, { owner: 'alice', status: 'SUCCEEDED', output: 'hi', agentName: 'Helper' });
    await eventLog.appendMany(id, [{ type: 'QUEUED', attempt: 0 }, { type: 'STARTED', attempt: 1 }, { type: 'TOKEN', attempt: 1, delta: 'hi' }]);
    const stream = await run(await executor.start('1', { query: `subscription { taskEvents(taskId: "${id}") { sequence type } }` }, ALICE));
    expect((await take(stream, 3)).map((r) => (r.data as any).taskEvents.type)).toEqual(['QUEUED', 'STARTED', 'TOKEN']);
    const next = stream.next();
    await new Promise((resolve) => setTimeout(resolve, 20));
    await eventLog.appendMany(id, [{ type: 'SUCCEEDED', attempt: 1 }]);
    expect(((await next).value as ExecutionResult).data).toEqual({ taskEvents: { sequence: 4, type: 'SUCCEEDED' } });
    expect(await stream.next()).toEqual({ done: true, value: undefined });
  });

  it('completes at once when a client resumes after the final event', async () => {
    const { executor, eventLog, tasks } = setup();
    const id = randomUUID();
    tasks.set(id, { owner: 'alice', status: 'RUNNING', output: null, agentName: 'Helper' });
    await eventLog.appendMany(id, [{ type: 'QUEUED', attempt: 0 }, { type: 'STARTED', attempt: 1 }, { type: 'SUCCEEDED', attempt: 1 }]);
    // The status still says RUNNING (it lags the final event), yet nothing is left to wait for.
    const stream = await run(await executor.start('1', { query: `subscription { taskEvents(taskId: "${id}", afterSequence: 3) { sequence } }` }, ALICE));
    expect(await stream.next()).toEqual({ done: true, value: undefined });
  });

  it('completes a subscription that starts past the end of the log once the task ends, instead of holding it forever', async () => {
    const { executor, eventLog, tasks } = setup();
    const id = randomUUID();
    tasks.set(id, { owner: 'alice', status: 'RUNNING', output: null, agentName: 'Helper' });
    await eventLog.appendMany(id, [{ type: 'QUEUED', attempt: 0 }, { type: 'STARTED', attempt: 1 }]);
    const stream = await run(await executor.start('1', { query: `subscription { taskEvents(taskId: "${id}", afterSequence: 40) { sequence } }` }, ALICE));
    const next = stream.next();
    await new Promise((resolve) => setTimeout(resolve, 20));
    await eventLog.appendMany(id, [{ type: 'TOKEN', attempt: 1, delta: 'hi' }, { type: 'SUCCEEDED', attempt: 1 }]);
    const settled = await Promise.race([next, new Promise((resolve) => setTimeout(resolve, 2000, 'still waiting'))]);
    expect(settled).toEqual({ done: true, value: undefined });

    // The same when the log had already ended before the subscription (the status lags behind it).
    const ended = randomUUID();
    tasks.set(ended, { owner: 'alice', status: 'RUNNING', output: null, agentName: 'Helper' });
    await eventLog.appendMany(ended, [{ type: 'QUEUED', attempt: 0 }, { type: 'FAILED', attempt: 1, delta: 'boom' }]);
    const late = await run(await executor.start('2', { query: `subscription { taskEvents(taskId: "${ended}", afterSequence: 7) { sequence } }` }, ALICE));
    expect(await Promise.race([late.next(), new Promise((resolve) => setTimeout(resolve, 2000, 'still waiting'))])).toEqual({ done: true, value: undefined });
  });

  it('ends a waiting stream at once when the client completes', async () => {
    const { executor, eventLog, tasks } = setup();
    const id = randomUUID();
    tasks.set(id, { owner: 'alice', status: 'QUEUED', output: null, agentName: 'Helper' });
    const started = await executor.start('1', { query: `subscription { taskEvents(taskId: "${id}") { sequence } }` }, ALICE);
    const stream = await run(started);
    const pending = stream.next();
    await new Promise((resolve) => setTimeout(resolve, 20));
    await stream.return!(undefined);
    expect(await pending).toEqual({ done: true, value: undefined });
    expect((eventLog as ReturnType<typeof createMemoryTaskEventLog>).subscribedTaskCount()).toBe(0);
  });

  it('reports the gateway\'s errors at their path and retries a failed fetch later, not per token', async () => {
    const { executor, eventLog, tasks, calls } = setup();
    const id = randomUUID();
    tasks.set(id, { owner: 'alice', status: 'RUNNING', output: null, agentName: null });
    await eventLog.appendMany(id, [{ type: 'QUEUED', attempt: 0 }, { type: 'STARTED', attempt: 1 }]);
    const stream = await run(await executor.start('1', { query: `subscription { taskEvents(taskId: "${id}") { sequence task { status agent { name } } } }` }, ALICE));
    const [first, second] = await take(stream, 2);
    expect(first.data).toBeNull();
    expect(first.errors?.map((e) => [e.extensions.code, e.path])).toEqual([['SERVICE_UNAVAILABLE', ['taskEvents', 'task']]]);
    expect(second.errors?.[0].extensions.code).toBe('SERVICE_UNAVAILABLE');
    for (const delta of ['a', 'b', 'c']) await eventLog.append(id, { type: 'TOKEN', attempt: 1, delta });
    await take(stream, 2);
    expect(calls.filter((call) => call.operationName === 'TaskEventTask')).toHaveLength(2);
    tasks.get(id)!.agentName = 'Back';
    await new Promise((resolve) => setTimeout(resolve, 60));
    const [recovered] = await take(stream, 1);
    expect(recovered.data).toEqual({ taskEvents: { sequence: 5, task: { status: 'RUNNING', agent: { name: 'Back' } } } });
    expect(calls.filter((call) => call.operationName === 'TaskEventTask')).toHaveLength(3);
  });
});
