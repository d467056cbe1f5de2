/**
 * One behavioural suite, run against both brokers: what the worker and the outbox relay rely on
 * must hold in-process (npm start) exactly as it does on RabbitMQ (production).
 */
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createTestVhost, type TestVhost } from '../../tests/support/rabbitmq.js';
import { MessagingError } from './errors.js';
import { createInProcessBroker } from './in-process.js';
import { connectRabbitMq } from './rabbitmq.js';
import type { Consumer, Delivery, MessageBroker } from './types.js';

const log = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });

interface Implementation {
  name: string;
  /** Once per file: what the broker needs (a vhost). */
  setup(): Promise<void>;
  connect(): Promise<MessageBroker>;
  teardown(): Promise<void>;
}

let vhost: TestVhost | undefined;
const implementations: Implementation[] = [
  {
    name: 'in-process',
    setup: async () => undefined,
    connect: async () => createInProcessBroker({ log }),
    teardown: async () => undefined,
  },
  {
    name: 'RabbitMQ',
    setup: async () => {
      vhost = await createTestVhost('messaging');
    },
    connect: () => connectRabbitMq({ url: vhost!.url, log, connectionName: 'broker.test' }),
    teardown: async () => {
      await vhost?.drop();
    },
  },
];

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** A promise with its resolve function outside, to hold a handler until the test lets it go. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

describe.each(implementations)('$name broker', (implementation) => {
  let broker: MessageBroker;
  /** Consumers and extra brokers a test started, stopped after it whatever happens. */
  const disposers: (() => Promise<void>)[] = [];
  let counter = 0;
  const fresh = (what: string) => `${what}.${++counter}`;
  const track = (consumer: Consumer): Consumer => {
    disposers.push(() => consumer.cancel());
    return consumer;
  };

  beforeAll(async () => {
    await implementation.setup();
    broker = await implementation.connect();
  });

  afterEach(async () => {
    while (disposers.length > 0) await disposers.pop()!();
  });

  afterAll(async () => {
    await broker?.close();
    await implementation.teardown();
  });

  it('resolves a publish once confirmed and delivers the body, message id and routing key', async () => {
    const queue = fresh('work');
    await broker.assertWorkQueue(queue);
    const seen: Delivery<unknown>[] = [];
    track(await broker.consume(queue, async (delivery) => void seen.push(delivery)));
    await expect(broker.sendToQueue(queue, { taskId: 't-1', tags: ['a', 'b'], n: 1.5 }, { messageId: 'm-1' })).resolves.toBeUndefined();
    await vi.waitFor(() => expect(seen).toHaveLength(1));
    expect(seen[0]).toEqual({ body: { taskId: 't-1', tags: ['a', 'b'], n: 1.5 }, deliveryCount: 1, messageId: 'm-1', routingKey: queue });
  });

  it('gives every message an id when the publisher gives none', async () => {
    const queue = fresh('work');
    await broker.assertWorkQueue(queue);
    const ids: string[] = [];
    track(await broker.consume(queue, async (delivery) => void ids.push(delivery.messageId)));
    await broker.sendToQueue(queue, 1);
    await broker.sendToQueue(queue, 2);
    await vi.waitFor(() => expect(ids).toHaveLength(2));
    expect(ids[0]).toMatch(/^[0-9a-f-]{36}$/);
    expect(ids[0]).not.toBe(ids[1]);
  });

  it('never runs more handlers at once than the prefetch', async () => {
    const queue = fresh('work');
    await broker.assertWorkQueue(queue);
    let running = 0;
    let most = 0;
    const done: number[] = [];
    track(
      await broker.consume<number>(
        queue,
        async ({ body }) => {
          most = Math.max(most, ++running);
          await sleep(60);
          running--;
          done.push(body);
        },
        { prefetch: 2 },
      ),
    );
    await Promise.all([1, 2, 3, 4, 5, 6].map((n) => broker.sendToQueue(queue, n)));
    await vi.waitFor(() => expect(done).toHaveLength(6));
    expect(most).toBe(2);
    expect([...done].sort()).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('acks a message whose handler resolves: it is not delivered again', async () => {
    const queue = fresh('work');
    await broker.assertWorkQueue(queue);
    const first: string[] = [];
    const consumer = track(await broker.consume<string>(queue, async ({ body }) => void first.push(body)));
    await broker.sendToQueue(queue, 'once');
    await vi.waitFor(() => expect(first).toEqual(['once']));
    await consumer.cancel();

    const second: string[] = [];
    track(await broker.consume<string>(queue, async ({ body }) => void second.push(body)));
    await broker.sendToQueue(queue, 'marker');
    await vi.waitFor(() => expect(second).toContain('marker'));
    expect(second).toEqual(['marker']);
  });

  it('delivers again a message whose handler throws, counting 1, 2, 3', async () => {
    const queue = fresh('work');
    await broker.assertWorkQueue(queue, { maxDeliveries: 5 });
    const counts: number[] = [];
    let succeeded = false;
    track(
      await broker.consume(queue, async ({ deliveryCount }) => {
        counts.push(deliveryCount);
        if (deliveryCount < 3) throw new Error(`attempt ${deliveryCount} fails`);
        succeeded = true;
      }),
    );
    await broker.sendToQueue(queue, { flaky: true });
    await vi.waitFor(() => expect(succeeded).toBe(true));
    await sleep(200);
    expect(counts).toEqual([1, 2, 3]);
  });

  it('moves a message to the dead-letter queue after maxDeliveries failed deliveries', async () => {
    const queue = fresh('work');
    await broker.assertWorkQueue(queue, { maxDeliveries: 3 });
    const counts: number[] = [];
    track(
      await broker.consume(queue, async ({ deliveryCount }) => {
        counts.push(deliveryCount);
        throw new Error('poison');
      }),
    );
    const dead: Delivery<unknown>[] = [];
    track(await broker.consume(`${queue}.dead`, async (delivery) => void dead.push(delivery)));
    await broker.sendToQueue(queue, { poison: true }, { messageId: 'poison-1' });
    await vi.waitFor(() => expect(dead).toHaveLength(1));
    expect(counts).toEqual([1, 2, 3]);
    expect(dead[0]).toMatchObject({ body: { poison: true }, messageId: 'poison-1', deliveryCount: 1 });
  });

  it('routes events by topic pattern to every bound queue, and only those', async () => {
    const received: Record<string, string[]> = { star: [], exact: [], hash: [], other: [] };
    const listen = async (name: keyof typeof received, patterns: string[]) =>
      track(await broker.consumeEvents(fresh(`events.${name}`), patterns, async ({ routingKey }) => void received[name].push(routingKey)));
    await listen('star', ['task.*']);
    await listen('exact', ['task.succeeded']);
    await listen('hash', ['task.#']);
    await listen('other', ['agent.*']);

    await broker.publishEvent('task.succeeded', { taskId: 't-1' });
    await broker.publishEvent('task.token.delta', { taskId: 't-1' });
    // Unbound to anything: confirmed and dropped.
    await broker.publishEvent('memory.compacted', {});
    // Each queue receives in publish order: once `other` has the marker, it would have had the rest.
    await broker.publishEvent('agent.deleted', { marker: true });
    await vi.waitFor(() => {
      expect(received.other).toEqual(['agent.deleted']);
      expect(received.hash).toHaveLength(2);
    });
    await sleep(200);
    expect(received).toEqual({
      star: ['task.succeeded'],
      exact: ['task.succeeded'],
      hash: ['task.succeeded', 'task.token.delta'],
      other: ['agent.deleted'],
    });
  });

  it('gives every consumer its own copy of the body', async () => {
    const seen: Record<string, unknown>[] = [];
    const mutate = async ({ body }: Delivery<Record<string, unknown>>) => {
      seen.push(structuredClone(body));
      body.touched = true;
    };
    track(await broker.consumeEvents(fresh('events.copy'), ['copy.test'], mutate));
    track(await broker.consumeEvents(fresh('events.copy'), ['copy.test'], mutate));
    const body = { list: [1] };
    const published = broker.publishEvent('copy.test', body);
    body.list.push(2);
    await published;
    await vi.waitFor(() => expect(seen).toHaveLength(2));
    expect(seen).toEqual([{ list: [1] }, { list: [1] }]);
    expect(body).toEqual({ list: [1, 2] });
  });

  it('cancel stops new deliveries and waits for the handlers in flight, which still ack', async () => {
    const queue = fresh('work');
    await broker.assertWorkQueue(queue);
    const hold = gate();
    const started: string[] = [];
    let finished = 0;
    const consumer = track(
      await broker.consume<string>(queue, async ({ body }) => {
        started.push(body);
        await hold.promise;
        finished++;
      }),
    );
    await broker.sendToQueue(queue, 'in flight');
    await vi.waitFor(() => expect(started).toEqual(['in flight']));

    let cancelled = false;
    const cancelling = consumer.cancel().then(() => (cancelled = true));
    await sleep(150);
    expect(cancelled).toBe(false);
    hold.open();
    await cancelling;
    expect(finished).toBe(1);

    await broker.sendToQueue(queue, 'after cancel');
    const next: string[] = [];
    track(await broker.consume<string>(queue, async ({ body }) => void next.push(body)));
    await vi.waitFor(() => expect(next).toEqual(['after cancel']));
    await sleep(150);
    // The cancelled handler got nothing more and its message was acked, not redelivered.
    expect(started).toEqual(['in flight']);
    expect(next).toEqual(['after cancel']);
  });

  it('keeps messages published while no consumer is attached, in order', async () => {
    const queue = fresh('work');
    await broker.assertWorkQueue(queue);
    for (const n of [1, 2, 3]) await broker.sendToQueue(queue, n);
    await sleep(100);
    const seen: number[] = [];
    track(await broker.consume<number>(queue, async ({ body }) => void seen.push(body), { prefetch: 1 }));
    await vi.waitFor(() => expect(seen).toEqual([1, 2, 3]));
  });

  it('refuses what it cannot deliver with a coded error', async () => {
    await expect(broker.sendToQueue(fresh('missing'), { lost: true })).rejects.toMatchObject({ name: 'MessagingError', code: 'UNROUTABLE' });
    await expect(broker.consume(fresh('missing'), async () => undefined)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    const queue = fresh('work');
    await broker.assertWorkQueue(queue);
    await expect(broker.sendToQueue(queue, 10n)).rejects.toMatchObject({ code: 'INVALID_BODY' });
    await expect(broker.sendToQueue(queue, undefined)).rejects.toMatchObject({ code: 'INVALID_BODY' });
    await expect(broker.assertWorkQueue(fresh('work'), { maxDeliveries: 0 })).rejects.toThrow(/maxDeliveries/);
    await expect(broker.consume(queue, async () => undefined, { prefetch: 0 })).rejects.toThrow(/prefetch/);
    // The broker is still fine afterwards.
    await expect(broker.sendToQueue(queue, 'ok')).resolves.toBeUndefined();
    expect(broker.isConnected()).toBe(true);
  });

  it('close waits for handlers in flight, then refuses publishes with CLOSED', async () => {
    const own = await implementation.connect();
    disposers.push(() => own.close());
    const queue = fresh('work');
    await own.assertWorkQueue(queue);
    const hold = gate();
    let finished = false;
    await own.consume(queue, async () => {
      await hold.promise;
      finished = true;
    });
    await own.sendToQueue(queue, 'slow');
    await sleep(100);
    const closing = own.close();
    await sleep(100);
    expect(finished).toBe(false);
    hold.open();
    await closing;
    expect(finished).toBe(true);
    expect(own.isConnected()).toBe(false);
    const refused = await own.sendToQueue(queue, 'late').catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(MessagingError);
    expect(refused).toMatchObject({ code: 'CLOSED' });
  });
});
