/**
 * What only RabbitMQ has: the declared topology, bodies that are not JSON, and recovery from a
 * connection the server closes (the broker restart itself is in rabbitmq-restart.test.ts).
 */
import { connect, type ChannelModel } from 'amqplib';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createTestVhost, rabbitmqctl, type TestVhost } from '../../tests/support/rabbitmq.js';
import { connectRabbitMq } from './rabbitmq.js';
import { DEAD_LETTER_EXCHANGE, EVENTS_EXCHANGE, type MessageBroker } from './types.js';

let vhost: TestVhost;
let broker: MessageBroker;
/** Every log line of the broker, to see its transitions. */
const logLines: { level: number; msg: string }[] = [];
const log = pino({ level: 'info' }, { write: (line: string) => void logLines.push(JSON.parse(line)) });
const disposers: (() => Promise<void>)[] = [];

beforeAll(async () => {
  vhost = await createTestVhost('rabbitmq');
  broker = await connectRabbitMq({ url: vhost.url, log, connectionName: 'rabbitmq.test', reconnectDelayMs: 100, maxReconnectDelayMs: 500 });
});

afterEach(async () => {
  while (disposers.length > 0) await disposers.pop()!();
});

afterAll(async () => {
  await broker?.close();
  await vhost?.drop();
});

/** A plain amqplib connection to look at the broker from outside. */
async function rawConnection(): Promise<ChannelModel> {
  const connection = await connect(vhost.url);
  disposers.push(() => connection.close().catch(() => undefined));
  return connection;
}

describe('RabbitMQ topology', () => {
  it('declares quorum work queues that dead-letter through the dead-letter exchange', async () => {
    await broker.assertWorkQueue('topology.work', { maxDeliveries: 4 });
    await broker.consumeEvents('topology.events', ['task.*', 'task.succeeded'], async () => undefined).then((consumer) => disposers.push(() => consumer.cancel()));

    const queues = JSON.parse(await rabbitmqctl('list_queues', '-p', vhost.name, 'name', 'durable', 'arguments', '--formatter', 'json', '--quiet')) as {
      name: string;
      durable: boolean;
      /** AMQP field table entries: [key, type, value]. */
      arguments: [string, string, unknown][];
    }[];
    const byName = Object.fromEntries(
      queues.map((queue) => [queue.name, { ...queue, arguments: Object.fromEntries(queue.arguments.map(([key, , value]) => [key, value])) }]),
    );
    expect(byName['topology.work']).toEqual({
      name: 'topology.work',
      durable: true,
      arguments: {
        'x-queue-type': 'quorum',
        'x-delivery-limit': 3,
        'x-dead-letter-exchange': DEAD_LETTER_EXCHANGE,
        'x-dead-letter-routing-key': 'topology.work.dead',
        'x-dead-letter-strategy': 'at-least-once',
        'x-overflow': 'reject-publish',
      },
    });
    expect(byName['topology.work.dead']).toEqual({ name: 'topology.work.dead', durable: true, arguments: { 'x-queue-type': 'quorum' } });
    expect(byName['topology.events'].arguments).toMatchObject({ 'x-queue-type': 'quorum', 'x-delivery-limit': 4, 'x-dead-letter-routing-key': 'topology.events.dead' });

    const exchanges = JSON.parse(await rabbitmqctl('list_exchanges', '-p', vhost.name, 'name', 'type', 'durable', '--formatter', 'json', '--quiet')) as { name: string }[];
    expect(exchanges).toEqual(
      expect.arrayContaining([
        { name: EVENTS_EXCHANGE, type: 'topic', durable: true },
        { name: DEAD_LETTER_EXCHANGE, type: 'direct', durable: true },
      ]),
    );

    const bindings = JSON.parse(await rabbitmqctl('list_bindings', '-p', vhost.name, 'source_name', 'destination_name', 'routing_key', '--formatter', 'json', '--quiet')) as {
      source_name: string;
    }[];
    expect(bindings.filter((binding) => binding.source_name !== '')).toEqual(
      expect.arrayContaining([
        { source_name: DEAD_LETTER_EXCHANGE, destination_name: 'topology.work.dead', routing_key: 'topology.work.dead' },
        { source_name: DEAD_LETTER_EXCHANGE, destination_name: 'topology.events.dead', routing_key: 'topology.events.dead' },
        { source_name: EVENTS_EXCHANGE, destination_name: 'topology.events', routing_key: 'task.*' },
        { source_name: EVENTS_EXCHANGE, destination_name: 'topology.events', routing_key: 'task.succeeded' },
      ]),
    );
  });

  it('refuses to redeclare a queue with another delivery limit, and keeps working', async () => {
    await broker.assertWorkQueue('topology.fixed', { maxDeliveries: 2 });
    await expect(broker.assertWorkQueue('topology.fixed', { maxDeliveries: 9 })).rejects.toThrow(/Could not declare queue "topology.fixed".*PRECONDITION_FAILED/);
    await expect(broker.sendToQueue('topology.fixed', 'still fine')).resolves.toBeUndefined();
  });

  it('publishes persistent JSON messages with a message id', async () => {
    await broker.assertWorkQueue('wire.format');
    await broker.sendToQueue('wire.format', { a: 1 }, { messageId: 'wire-1' });
    const channel = await (await rawConnection()).createChannel();
    const message = await channel.get('wire.format', { noAck: true });
    expect(message).not.toBe(false);
    if (message === false) return;
    expect(message.properties).toMatchObject({ contentType: 'application/json', deliveryMode: 2, messageId: 'wire-1' });
    expect(JSON.parse(message.content.toString())).toEqual({ a: 1 });
  });
});

describe('RabbitMQ consumers', () => {
  it('dead-letters a body that is not JSON without calling the handler', async () => {
    await broker.assertWorkQueue('garbage.in', { maxDeliveries: 5 });
    const handled: unknown[] = [];
    const consumer = await broker.consume('garbage.in', async ({ body }) => void handled.push(body));
    disposers.push(() => consumer.cancel());

    const channel = await (await rawConnection()).createConfirmChannel();
    channel.sendToQueue('garbage.in', Buffer.from('not json {'), { persistent: true, messageId: 'garbage-1' });
    channel.sendToQueue('garbage.in', Buffer.from('{"fine":true}'), { persistent: true });
    await channel.waitForConfirms();

    await vi.waitFor(() => expect(handled).toEqual([{ fine: true }]));
    const dead = await vi.waitFor(async () => {
      const message = await channel.get('garbage.in.dead', { noAck: true });
      if (message === false) throw new Error('nothing in the dead-letter queue yet');
      return message;
    });
    expect(dead.content.toString()).toBe('not json {');
    expect(dead.properties.messageId).toBe('garbage-1');
    expect(logLines.some((line) => line.msg.includes('not JSON'))).toBe(true);
  });

  it('reconnects and resumes its consumers when the server closes the connection', async () => {
    await broker.assertWorkQueue('survivor');
    const seen: string[] = [];
    const consumer = await broker.consume<string>('survivor', async ({ body }) => void seen.push(body));
    disposers.push(() => consumer.cancel());
    await broker.sendToQueue('survivor', 'before');
    await vi.waitFor(() => expect(seen).toEqual(['before']));

    const linesBefore = logLines.length;
    await rabbitmqctl('close_all_connections', '--vhost', vhost.name, 'test: connection closed by the server');
    await vi.waitFor(() => expect(logLines.slice(linesBefore).map((line) => line.msg)).toContain('Reconnected to RabbitMQ'), { timeout: 10_000 });
    expect(logLines.slice(linesBefore).map((line) => line.msg)).toContain('RabbitMQ connection lost; reconnecting');
    expect(broker.isConnected()).toBe(true);

    await vi.waitFor(() => broker.sendToQueue('survivor', 'after'), { timeout: 5000 });
    await vi.waitFor(() => expect(seen).toContain('after'), { timeout: 5000 });
  });
});
