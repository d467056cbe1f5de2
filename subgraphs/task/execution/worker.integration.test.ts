import { randomUUID } from 'node:crypto';
import type { MikroORM } from '@mikro-orm/postgresql';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { openServiceDatabase } from '../../../lib/db.js';
import { createLogger } from '../../../lib/logger.js';
import { createInProcessBroker } from '../../../lib/messaging/in-process.js';
import { TASK_DEAD_LETTER_QUEUE, TASK_QUEUE, type Delivery, type MessageBroker } from '../../../lib/messaging/types.js';
import { createMemoryTaskEventLog } from '../../../lib/task-events/memory.js';
import type { TaskEvent, TaskEventLog } from '../../../lib/task-events/types.js';
import { createTestDatabase } from '../../../tests/support/database.js';
import { entities } from '../entities.js';
import { migrations } from '../migrations.js';
import { AbortError, ProviderError, type CompletionRequest, type LlmProvider, type StreamChunk } from '../providers/types.js';
import { cancelTask } from '../tasks.js';
import { OutboxRelay, TOPIC_SUBMITTED, TOPIC_SUCCEEDED, writeOutbox } from './outbox.js';
import { TaskWorker, type ProviderAccess } from './worker.js';

/**
 * The worker against the real PostgreSQL, with the in-process broker and event log (the RabbitMQ
 * and Redis implementations have their own suites, and the end-to-end tests run all of it).
 * Providers here are scripted: the SDK paths are tested in providers/ and end to end.
 */
const log = createLogger('test', 'silent');
let orm: MikroORM;
let dropDatabase: () => Promise<void>;
const owner = randomUUID();
const disposers: (() => Promise<void>)[] = [];

beforeAll(async () => {
  const db = await createTestDatabase('worker');
  dropDatabase = db.drop;
  orm = await openServiceDatabase({ databaseUrl: db.url, schema: 'task', entities, migrations });
});
afterEach(async () => {
  while (disposers.length > 0) await disposers.pop()!();
});
afterAll(async () => {
  await orm?.close();
  await dropDatabase?.();
});

type Script = (request: CompletionRequest, signal: AbortSignal, call: number) => AsyncIterable<StreamChunk>;

/** A provider that plays `script` (per call), recording the requests and whether they were aborted. */
function scripted(script: Script) {
  const calls: { request: CompletionRequest; signal: AbortSignal }[] = [];
  const provider: LlmProvider = {
    name: 'scripted',
    stream(request, signal) {
      calls.push({ request, signal });
      return script(request, signal, calls.length);
    },
  };
  return { provider, calls };
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(timer);
      reject(new AbortError('aborted'));
    });
  });

async function* words(text: string, delayMs = 0, signal?: AbortSignal): AsyncIterable<StreamChunk> {
  for (const word of text.match(/\S+\s*/g) ?? []) {
    if (delayMs) await sleep(delayMs, signal);
    yield { type: 'delta', text: word };
  }
  yield { type: 'usage', promptTokens: 7, completionTokens: 3 };
}

interface Rig {
  broker: MessageBroker;
  eventLog: TaskEventLog;
  relay: OutboxRelay;
  worker: TaskWorker;
}

async function rig(provider: LlmProvider, overrides: Partial<ConstructorParameters<typeof TaskWorker>[0]> = {}, shared?: Pick<Rig, 'broker' | 'eventLog' | 'relay'>): Promise<Rig> {
  const broker = shared?.broker ?? createInProcessBroker();
  const eventLog = shared?.eventLog ?? createMemoryTaskEventLog({ retentionSeconds: 3600 });
  const relay = shared?.relay ?? new OutboxRelay({ orm, broker, eventLog, log, pollMs: 50 });
  if (!shared) await relay.start();
  const providers: ProviderAccess = {
    get: (name) => (name === 'scripted' ? provider : undefined),
    contextWindow: () => 8192,
    estimateTokens: (text) => Math.ceil(text.length / 4),
    stream: (p, request, signal) => p.stream(request, signal),
  };
  const worker = new TaskWorker({
    orm,
    broker,
    eventLog,
    relay,
    providers,
    readHistory: async () => [],
    log,
    leaseMs: 1000,
    maxAttempts: 2,
    coalesceMs: 0,
    ...overrides,
  });
  await worker.start();
  disposers.push(async () => {
    await worker.stop(200);
    if (!shared) {
      await relay.stop();
      await broker.close();
      await eventLog.close();
    }
  });
  return { broker, eventLog, relay, worker };
}

/** Inserts a QUEUED task and its outbox row, as runTask does, and wakes the relay. */
async function submit(r: Rig, input = 'hello there', provider = 'scripted'): Promise<string> {
  const id = randomUUID();
  const em = orm.em.fork();
  await em.transactional(async (tx) => {
    await tx.execute(
      `insert into "task"."tasks" (id, owner_id, agent_id, input, status, provider, model, system_prompt, created_at, updated_at)
       values (?, ?, ?, ?, 'QUEUED', ?, 'm-1', 'Be brief.', now(), now())`,
      [id, owner, randomUUID(), input, provider],
    );
    await writeOutbox(tx, id, TOPIC_SUBMITTED, { taskId: id, attempts: 0 });
  });
  r.relay.wake();
  return id;
}

async function row(id: string) {
  const rows = await orm.em.fork().execute(`select * from "task"."tasks" where id = ?`, [id]);
  return rows[0];
}

/** Waits for the task's final event and returns every event of the log. */
async function finalEvents(eventLog: TaskEventLog, id: string): Promise<TaskEvent[]> {
  const events: TaskEvent[] = [];
  const timeout = AbortSignal.timeout(10_000);
  for await (const event of eventLog.stream(id, 0, timeout)) events.push(event);
  if (timeout.aborted) throw new Error(`no final event for ${id}: ${JSON.stringify(events)}`);
  return events;
}

const textOf = (events: TaskEvent[]) =>
  events.reduce((text, e) => (e.type === 'STARTED' ? '' : e.type === 'TOKEN' ? text + e.delta : text), '');

describe('task worker', () => {
  it('runs a task: QUEUED, STARTED, TOKENs, SUCCEEDED, with the outcome committed and announced', async () => {
    const { provider, calls } = scripted((request) => words(`Reply to ${request.messages.at(-1)!.content}`));
    const r = await rig(provider);
    const id = await submit(r, 'the question');
    const events = await finalEvents(r.eventLog, id);
    expect(events.map((e) => e.sequence)).toEqual(events.map((_, i) => i + 1));
    expect(events[0]).toMatchObject({ type: 'QUEUED' });
    expect(events[1]).toMatchObject({ type: 'STARTED', attempt: 1 });
    expect(events.at(-1)).toMatchObject({ type: 'SUCCEEDED', attempt: 1 });
    expect(textOf(events)).toBe('Reply to the question');
    expect(calls[0].request).toMatchObject({ model: 'm-1', systemPrompt: 'Be brief.', messages: [{ role: 'user', content: 'the question' }] });

    const task = await row(id);
    expect(task).toMatchObject({ status: 'SUCCEEDED', output: 'Reply to the question', attempts: 1, prompt_tokens: 7, completion_tokens: 3, total_tokens: 10, worker_id: null });
    const outbox = await orm.em.fork().execute<{ topic: string; payload: unknown }[]>(`select topic, payload from "task"."outbox" where task_id = ? order by id`, [id]);
    expect(outbox.map((o: { topic: string }) => o.topic)).toEqual(['task.submitted', 'task.succeeded']);
    expect(outbox[1].payload).toMatchObject({ taskId: id, ownerId: owner, status: 'SUCCEEDED', output: 'Reply to the question', input: 'the question' });
    // The relay archives the events of the finished task.
    for (let i = 0; i < 50; i++) {
      const archived = await orm.em.fork().execute(`select count(*)::int as n from "task"."task_events" where task_id = ?`, [id]);
      if (archived[0].n === events.length) break;
      await sleep(50);
    }
    const archived = await orm.em.fork().execute<{ type: string }[]>(`select sequence, type from "task"."task_events" where task_id = ? order by sequence`, [id]);
    expect(archived.map((e: { type: string }) => e.type)).toEqual(events.map((e) => e.type));
  });

  it('fails at once on a final provider error, with the reason in the task and the event', async () => {
    const { provider, calls } = scripted(async function* () {
      throw new ProviderError('scripted: 401 invalid API key', false, undefined, 401);
    });
    const r = await rig(provider);
    const id = await submit(r);
    const events = await finalEvents(r.eventLog, id);
    expect(events.at(-1)).toMatchObject({ type: 'FAILED', delta: 'scripted: 401 invalid API key' });
    expect(await row(id)).toMatchObject({ status: 'FAILED', error: 'scripted: 401 invalid API key', attempts: 1 });
    expect(calls).toHaveLength(1);
  });

  it('starts a new attempt after a retryable failure mid-stream, and the client text starts over', async () => {
    const { provider } = scripted(async function* (_request, _signal, call) {
      yield { type: 'delta', text: 'half an ' };
      if (call === 1) throw new ProviderError('scripted: the connection was lost mid-stream', true);
      yield { type: 'delta', text: 'answer' };
    });
    const r = await rig(provider);
    const id = await submit(r);
    const events = await finalEvents(r.eventLog, id);
    expect(events.filter((e) => e.type === 'STARTED').map((e) => e.attempt)).toEqual([1, 2]);
    expect(events.at(-1)).toMatchObject({ type: 'SUCCEEDED', attempt: 2 });
    expect(textOf(events)).toBe('half an answer');
    expect(await row(id)).toMatchObject({ status: 'SUCCEEDED', output: 'half an answer', attempts: 2 });
  });

  it('fails after maxAttempts retryable failures', async () => {
    const { provider, calls } = scripted(async function* () {
      yield { type: 'delta', text: 'x' };
      throw new ProviderError('scripted: 503 overloaded', true, undefined, 503);
    });
    const r = await rig(provider);
    const id = await submit(r);
    const events = await finalEvents(r.eventLog, id);
    expect(events.at(-1)).toMatchObject({ type: 'FAILED', attempt: 2, delta: 'scripted: 503 overloaded' });
    expect(calls).toHaveLength(2);
  });

  it('stops a running task within a second of cancelTask, and never finishes it', async () => {
    const { provider, calls } = scripted((_request, signal) => words('a b c d e f g h i j k l m n o p q r s t u v w x y z', 100, signal));
    const r = await rig(provider);
    const id = await submit(r);
    const seen: TaskEvent[] = [];
    const unsubscribe = await r.eventLog.subscribe(id, (e) => seen.push(e));
    while (!seen.some((e) => e.type === 'TOKEN')) await sleep(10);
    const started = Date.now();
    await cancelTask(orm.em.fork(), owner, id);
    r.relay.wake();
    while (!calls[0].signal.aborted && Date.now() - started < 2000) await sleep(5);
    expect(Date.now() - started).toBeLessThan(1000);
    await unsubscribe();
    const events = await finalEvents(r.eventLog, id);
    expect(events.at(-1)!.type).toBe('CANCELLED');
    await sleep(300);
    expect(await row(id)).toMatchObject({ status: 'CANCELLED', output: null });
    expect((await r.eventLog.read(id, 0)).filter((e) => e.type === 'SUCCEEDED')).toEqual([]);
  });

  it('reaps a task whose worker died: back to the queue while attempts last, then WORKER_LOST', async () => {
    const { provider } = scripted(() => words('survived'));
    // A long lease keeps the worker's own reaper timer out of the way of the explicit reap() below.
    const r = await rig(provider, { leaseMs: 60_000 });
    const id = randomUUID();
    const lost = randomUUID();
    for (const [taskId, attempts] of [[id, 1], [lost, 2]] as const) {
      await orm.em.fork().execute(
        `insert into "task"."tasks" (id, owner_id, agent_id, input, status, provider, model, attempts, worker_id, lease_expires_at, created_at, updated_at)
         values (?, ?, ?, 'x', 'RUNNING', 'scripted', 'm', ?, 'dead-worker', now() - interval '1 minute', now(), now())`,
        [taskId, owner, randomUUID(), attempts],
      );
    }
    const reaped = await r.worker.reap();
    expect(reaped).toMatchObject({ requeued: 1, failed: 1 });
    const events = await finalEvents(r.eventLog, id);
    expect(events.at(-1)).toMatchObject({ type: 'SUCCEEDED', attempt: 2 });
    expect(await row(id)).toMatchObject({ status: 'SUCCEEDED', attempts: 2, output: 'survived' });
    expect(await row(lost)).toMatchObject({ status: 'FAILED' });
    expect((await row(lost)).error).toMatch(/^WORKER_LOST/);
    expect((await finalEvents(r.eventLog, lost)).at(-1)).toMatchObject({ type: 'FAILED' });
  });

  it('fails the task of a dead-lettered message with the reason', async () => {
    const { provider } = scripted(() => words('never'));
    const r = await rig(provider);
    const id = randomUUID();
    await orm.em.fork().execute(
      `insert into "task"."tasks" (id, owner_id, agent_id, input, status, provider, model, created_at, updated_at)
       values (?, ?, ?, 'x', 'QUEUED', 'scripted', 'm', now(), now())`,
      [id, owner, randomUUID()],
    );
    await r.broker.sendToQueue(TASK_DEAD_LETTER_QUEUE, { taskId: id });
    const events = await finalEvents(r.eventLog, id);
    expect(events.at(-1)!.type).toBe('FAILED');
    expect((await row(id)).error).toMatch(/dead-lettered/);
  });

  it('hands running tasks back on shutdown; another worker runs them to the end as a new attempt', async () => {
    const { provider } = scripted((_request, signal, call) => words(call === 1 ? 'slow slow slow slow slow slow slow slow' : 'done', call === 1 ? 200 : 0, signal));
    const first = await rig(provider);
    const id = await submit(first);
    const seen: TaskEvent[] = [];
    const unsubscribe = await first.eventLog.subscribe(id, (e) => seen.push(e));
    while (!seen.some((e) => e.type === 'TOKEN')) await sleep(10);
    await first.worker.stop(100);
    await unsubscribe();
    expect((await row(id)).status).toBe('QUEUED');
    await rig(provider, {}, first);
    const events = await finalEvents(first.eventLog, id);
    expect(events.at(-1)).toMatchObject({ type: 'SUCCEEDED', attempt: 2 });
    expect(textOf(events)).toBe('done');
  });

  it('passes on a message that arrives while it stops as a new message, acked instead of returned (no delivery counted)', async () => {
    // RabbitMQ can deliver while the consumer's cancel is on its way: such a message was returned
    // to the queue, and each return counts toward the delivery limit that dead-letters a task.
    const { provider } = scripted((_request, signal, call) => words(call === 1 ? 'slow slow slow slow slow slow slow slow' : 'late done', call === 1 ? 200 : 0, signal));
    const handlers: ((delivery: Delivery<unknown>) => Promise<void>)[] = [];
    const broker = createInProcessBroker();
    const consume = broker.consume.bind(broker);
    broker.consume = (queue, handler, options) => {
      if (queue === TASK_QUEUE) handlers.push(handler as (delivery: Delivery<unknown>) => Promise<void>);
      return consume(queue, handler, options);
    };
    const eventLog = createMemoryTaskEventLog({ retentionSeconds: 3600 });
    const relay = new OutboxRelay({ orm, broker, eventLog, log, pollMs: 50 });
    await relay.start();
    disposers.push(async () => {
      await relay.stop();
      await broker.close();
      await eventLog.close();
    });
    const first = await rig(provider, {}, { broker, eventLog, relay });
    const running = await submit(first);
    while ((await row(running))?.status !== 'RUNNING') await sleep(10);
    // A second task, as if its message were delivered to the first worker once it began to stop.
    const late = randomUUID();
    await orm.em.fork().execute(
      `insert into "task"."tasks" (id, owner_id, agent_id, input, status, provider, model, created_at, updated_at)
       values (?, ?, ?, 'late', 'QUEUED', 'scripted', 'm-1', now(), now())`,
      [late, owner, randomUUID()],
    );
    const stopping = first.worker.stop(2000);
    await expect(handlers[0]({ body: { taskId: late }, deliveryCount: 4, messageId: randomUUID(), routingKey: TASK_QUEUE })).resolves.toBeUndefined();
    await stopping;
    const outbox = await orm.em.fork().execute(`select payload from "task"."outbox" where task_id = ?`, [late]);
    expect(outbox).toEqual([{ payload: { taskId: late, attempts: 0 } }]);
  });

  it('keeps renewing the lease of a task that outlasts it, so no reaper takes the task away', async () => {
    // Three leases long, with a second worker whose reaper would take an expired lease.
    const { provider, calls } = scripted((_request, signal) => words('one two three four five six seven eight nine ten', 300, signal));
    const first = await rig(provider);
    await rig(provider, {}, first);
    const id = await submit(first);
    const events = await finalEvents(first.eventLog, id);
    expect(events.filter((e) => e.type === 'STARTED').map((e) => e.attempt)).toEqual([1]);
    expect(events.at(-1)).toMatchObject({ type: 'SUCCEEDED', attempt: 1 });
    expect(await row(id)).toMatchObject({ status: 'SUCCEEDED', attempts: 1 });
    expect(calls).toHaveLength(1);
  });

  it('stops an attempt that is no longer its own within a second, without finishing the task', async () => {
    const { provider, calls } = scripted((_request, signal) => words('a b c d e f g h i j k l m n o p q r s t u v w x y z', 100, signal));
    const r = await rig(provider);
    const id = await submit(r);
    const seen: TaskEvent[] = [];
    const unsubscribe = await r.eventLog.subscribe(id, (e) => seen.push(e));
    while (!seen.some((e) => e.type === 'TOKEN')) await sleep(10);
    await unsubscribe();
    // As if the lease had expired and another worker had claimed the task.
    await orm.em.fork().execute(
      `update "task"."tasks" set attempts = attempts + 1, worker_id = 'another-worker', lease_expires_at = now() + interval '1 minute' where id = ?`,
      [id],
    );
    const started = Date.now();
    while (!calls[0].signal.aborted && Date.now() - started < 2000) await sleep(5);
    expect(Date.now() - started).toBeLessThan(1000);
    await sleep(300);
    expect(await row(id)).toMatchObject({ status: 'RUNNING', worker_id: 'another-worker', attempts: 2, output: null });
    expect((await r.eventLog.read(id, 0)).filter((e) => e.type === 'SUCCEEDED')).toEqual([]);
    await orm.em.fork().execute(`update "task"."tasks" set status = 'FAILED', worker_id = null, lease_expires_at = null where id = ?`, [id]);
  });
});

describe('outbox relay', () => {
  it('relays a batch of many tasks at once and leaves only the rows it could not publish, in order', async () => {
    const broker = createInProcessBroker();
    const eventLog = createMemoryTaskEventLog({ retentionSeconds: 3600 });
    const failing = new Set<string>();
    const sent: string[] = [];
    // The broker refuses the messages of the tasks in `failing`, as RabbitMQ does while it is away.
    const flaky = new Proxy(broker, {
      get(target, property, receiver) {
        if (property === 'sendToQueue') {
          return async (queue: string, body: { taskId: string }, options?: object) => {
            if (failing.has(body.taskId)) throw new Error('broker away');
            sent.push(body.taskId);
            return target.sendToQueue(queue, body, options);
          };
        }
        const value = Reflect.get(target, property, receiver);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const relay = new OutboxRelay({ orm, broker: flaky, eventLog, log, pollMs: 50, batchSize: 20 });
    disposers.push(async () => {
      await relay.stop();
      await broker.close();
      await eventLog.close();
    });
    const ids = Array.from({ length: 30 }, () => randomUUID());
    failing.add(ids[3]);
    const em = orm.em.fork();
    for (const id of ids) {
      await em.execute(
        `insert into "task"."tasks" (id, owner_id, agent_id, input, status, provider, model, created_at, updated_at)
         values (?, ?, ?, 'x', 'QUEUED', 'scripted', 'm', now(), now())`,
        [id, owner, randomUUID()],
      );
      await writeOutbox(em, id, TOPIC_SUBMITTED, { taskId: id, attempts: 0 });
    }
    // A second row of the failing task must wait behind its first.
    await writeOutbox(em, ids[3], TOPIC_SUBMITTED, { taskId: ids[3], attempts: 1 });
    await relay.start();
    const unpublished = async () =>
      (await orm.em.fork().execute<{ task_id: string }[]>(`select task_id from "task"."outbox" where published_at is null and task_id in (${ids.map(() => '?').join(', ')}) order by id`, ids)).map(
        (o: { task_id: string }) => o.task_id,
      );
    for (let i = 0; i < 100 && (await unpublished()).length > 2; i++) await sleep(20);
    expect(await unpublished()).toEqual([ids[3], ids[3]]);
    expect(new Set(sent)).toEqual(new Set(ids.filter((id) => id !== ids[3])));
    for (const id of ids) expect((await eventLog.read(id, 0)).map((e) => e.type)).toEqual(['QUEUED']);

    failing.clear();
    relay.wake();
    for (let i = 0; i < 100 && (await unpublished()).length > 0; i++) await sleep(20);
    expect(await unpublished()).toEqual([]);
    expect(sent.filter((id) => id === ids[3])).toHaveLength(2);
  });

  it('appends the final event a finishing worker could not, and archives the log', async () => {
    const broker = createInProcessBroker();
    const eventLog = createMemoryTaskEventLog({ retentionSeconds: 3600 });
    const relay = new OutboxRelay({ orm, broker, eventLog, log, pollMs: 50 });
    disposers.push(async () => {
      await relay.stop();
      await broker.close();
      await eventLog.close();
    });
    const id = randomUUID();
    const em = orm.em.fork();
    await em.execute(
      `insert into "task"."tasks" (id, owner_id, agent_id, input, status, provider, model, output, attempts, created_at, updated_at, finished_at)
       values (?, ?, ?, 'x', 'SUCCEEDED', 'scripted', 'm', 'done', 1, now(), now(), now())`,
      [id, owner, randomUUID()],
    );
    // The worker committed its outcome and died before appending SUCCEEDED.
    await eventLog.appendMany(id, [
      { type: 'QUEUED', attempt: 1 },
      { type: 'STARTED', attempt: 1 },
      { type: 'TOKEN', attempt: 1, delta: 'done' },
    ]);
    await writeOutbox(em, id, TOPIC_SUCCEEDED, { taskId: id, ownerId: owner, status: 'SUCCEEDED', attempt: 1, output: 'done', error: null, lastSequence: 3 });
    await relay.start();
    const events = await finalEvents(eventLog, id);
    expect(events.map((e) => [e.sequence, e.type])).toEqual([[1, 'QUEUED'], [2, 'STARTED'], [3, 'TOKEN'], [4, 'SUCCEEDED']]);
    for (let i = 0; i < 50; i++) {
      const archived = await orm.em.fork().execute(`select count(*)::int as n from "task"."task_events" where task_id = ?`, [id]);
      if (archived[0].n === 4) break;
      await sleep(50);
    }
    const archived = await orm.em.fork().execute<{ type: string }[]>(`select type from "task"."task_events" where task_id = ? order by sequence`, [id]);
    expect(archived.map((e: { type: string }) => e.type)).toEqual(['QUEUED', 'STARTED', 'TOKEN', 'SUCCEEDED']);
  });
});
