/**
 * RabbitMQ stops and starts again under a running broker client (`rabbitmqctl stop_app` /
 * `start_app`): publishes fail fast during the outage, then the client reconnects by itself, its
 * consumer resumes, and durable messages published before the stop are still there.
 *
 * This stops RabbitMQ for every vhost: createTestVhost's lock keeps other test files that use
 * RabbitMQ out of the way, and RabbitMQ is started again whatever happens.
 */
import { pino } from 'pino';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { createTestVhost, ensureRabbitMqRunning, rabbitmqctl, type TestVhost } from '../../tests/support/rabbitmq.js';
import { connectRabbitMq } from './rabbitmq.js';
import type { MessageBroker } from './types.js';

const log = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
let vhost: TestVhost | undefined;
let broker: MessageBroker | undefined;

beforeAll(async () => {
  // Waits for other files that hold a vhost to finish.
  vhost = await createTestVhost('restart', { restartsBroker: true });
  broker = await connectRabbitMq({ url: vhost.url, log, connectionName: 'rabbitmq-restart.test', reconnectDelayMs: 200, maxReconnectDelayMs: 1000 });
}, 600_000);

afterAll(async () => {
  // Whatever happened above, leave RabbitMQ running for whoever comes next.
  await ensureRabbitMqRunning();
  await broker?.close();
  await vhost?.drop();
}, 120_000);

it('survives a broker restart: fails fast while down, then reconnects and resumes by itself', async () => {
  const client = broker!;
  await client.assertWorkQueue('restart.live');
  await client.assertWorkQueue('restart.parked');
  const seen: string[] = [];
  await client.consume<string>('restart.live', async ({ body }) => void seen.push(body));
  await client.sendToQueue('restart.live', 'before the stop');
  await vi.waitFor(() => expect(seen).toEqual(['before the stop']));
  // No consumer on this one: it must still hold its message after the restart.
  await client.sendToQueue('restart.parked', 'parked before the stop', { messageId: 'parked-1' });

  try {
    await rabbitmqctl('stop_app');
    await vi.waitFor(() => expect(client.isConnected()).toBe(false), { timeout: 5000 });
    const started = Date.now();
    await expect(client.sendToQueue('restart.live', 'during the outage')).rejects.toMatchObject({ code: 'DISCONNECTED' });
    await expect(client.publishEvent('task.succeeded', {})).rejects.toMatchObject({ code: 'DISCONNECTED' });
    expect(Date.now() - started).toBeLessThan(1000);
  } finally {
    await ensureRabbitMqRunning();
  }

  await vi.waitFor(() => expect(client.isConnected()).toBe(true), { timeout: 15_000, interval: 100 });
  // The consumer resumed on the new connection: a message published now reaches it.
  await vi.waitFor(() => client.sendToQueue('restart.live', 'after the restart'), { timeout: 5000, interval: 200 });
  await vi.waitFor(() => expect(seen).toContain('after the restart'), { timeout: 5000 });
  expect(seen).not.toContain('during the outage');

  const parked: { body: string; messageId: string }[] = [];
  const consumer = await client.consume<string>('restart.parked', async ({ body, messageId }) => void parked.push({ body, messageId }));
  await vi.waitFor(() => expect(parked).toEqual([{ body: 'parked before the stop', messageId: 'parked-1' }]), { timeout: 5000 });
  await consumer.cancel();
}, 60_000);
