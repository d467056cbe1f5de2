/**
 * The MessageBroker on RabbitMQ (amqplib): one connection, a confirm channel for publishing and
 * one channel per consumer. Work and event queues are quorum queues whose delivery limit makes the
 * broker itself dead-letter a message that failed too often. When the connection drops, the broker
 * reconnects with backoff, declares its topology again and resumes every consumer; publishes
 * during the outage reject at once with DISCONNECTED so that callers (an outbox relay) retry later.
 *
 * Topology (all durable):
 * - EVENTS_EXCHANGE `platform.events` (topic), DEAD_LETTER_EXCHANGE `platform.dead-letter` (direct);
 * - per work or event queue `q`: a quorum queue with x-delivery-limit = maxDeliveries - 1 (the
 *   broker allows that many redeliveries after the first), x-dead-letter-exchange =
 *   `platform.dead-letter`, x-dead-letter-routing-key = `q.dead`, x-dead-letter-strategy =
 *   at-least-once (with x-overflow = reject-publish, which it requires) so that a dead-lettered
 *   message is not lost on the way; and the quorum queue `q.dead`, bound to `platform.dead-letter`
 *   with routing key `q.dead`;
 * - an event queue is also bound to `platform.events` once per routing-key pattern.
 */
import { randomUUID } from 'node:crypto';
import { connect, type Channel, type ChannelModel, type ConfirmChannel, type ConsumeMessage, type Message } from 'amqplib';
import type { Logger } from 'pino';
import { requireName, resolvePrefetch, resolveWorkQueue, serializeBody, type ResolvedWorkQueue } from './common.js';
import { MessagingError } from './errors.js';
import { DEAD_LETTER_EXCHANGE, EVENTS_EXCHANGE, type ConsumeOptions, type Consumer, type Delivery, type Handler, type MessageBroker, type PublishOptions, type WorkQueueOptions } from './types.js';

export interface RabbitMqOptions {
  /** `amqp://user:password@host:5672/vhost`. Heartbeat and other tuning go in its query string. */
  url: string;
  log: Logger;
  /** Shown by `rabbitmqctl list_connections` and the management UI. @default 'agent-platform' */
  connectionName?: string;
  /** First delay before reconnecting; it doubles after each failed attempt. @default 1000 */
  reconnectDelayMs?: number;
  /** Longest delay between reconnection attempts. @default 15000 */
  maxReconnectDelayMs?: number;
  /** How long a publish waits for the broker's confirm before rejecting with TIMEOUT. @default 10000 */
  publishTimeoutMs?: number;
  /** Bound on opening the connection (TCP and AMQP handshake). @default 10000 */
  connectTimeoutMs?: number;
}

/** Internal header that ties a returned (unroutable) message to its publish. */
const PUBLISH_ID_HEADER = 'x-publish-id';
/** Bound on basic.cancel when a consumer stops; the channel is closed afterwards anyway. */
const CANCEL_TIMEOUT_MS = 5000;

/**
 * Connects to RabbitMQ, declares the exchanges and returns the broker. Rejects with DISCONNECTED
 * when the first connection fails (reconnection only starts once connected).
 */
export async function connectRabbitMq(options: RabbitMqOptions): Promise<MessageBroker> {
  const broker = new RabbitMqBroker(options);
  await broker.start();
  return broker;
}

/** What the topology knows of a queue, to declare it again after a reconnect. */
interface QueueTopology {
  /** Unset for a dead-letter queue, which never dead-letters. */
  deadLetter?: ResolvedWorkQueue;
  /** Routing-key patterns binding it to EVENTS_EXCHANGE. */
  patterns: Set<string>;
}

interface PendingPublish {
  returned: boolean;
  done: Promise<void>;
  fail(error: Error): void;
}

type State = 'connecting' | 'connected' | 'reconnecting' | 'closing' | 'closed';

class RabbitMqBroker implements MessageBroker {
  readonly log: Logger;
  private readonly url: string;
  private readonly safeUrl: string;
  private readonly connectionName: string;
  private readonly reconnectDelayMs: number;
  private readonly maxReconnectDelayMs: number;
  private readonly publishTimeoutMs: number;
  private readonly connectTimeoutMs: number;

  private state: State = 'connecting';
  private connection: ChannelModel | undefined;
  private publisher: ConfirmChannel | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private reconnectAttempts = 0;
  /** The connection attempt under way, which close() must wait for. */
  private establishing: Promise<void> | undefined;
  private closing: Promise<void> | undefined;
  private readonly topology = new Map<string, QueueTopology>();
  private readonly consumers = new Set<RabbitMqConsumer>();
  private readonly pendingPublishes = new Map<string, PendingPublish>();

  constructor(options: RabbitMqOptions) {
    this.url = options.url;
    this.safeUrl = redactUrl(options.url);
    this.log = options.log.child({ component: 'rabbitmq' });
    this.connectionName = options.connectionName ?? 'agent-platform';
    this.reconnectDelayMs = options.reconnectDelayMs ?? 1000;
    this.maxReconnectDelayMs = Math.max(options.maxReconnectDelayMs ?? 15_000, this.reconnectDelayMs);
    this.publishTimeoutMs = options.publishTimeoutMs ?? 10_000;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
  }

  async start(): Promise<void> {
    try {
      await this.establish();
    } catch (error) {
      this.state = 'closed';
      throw new MessagingError('DISCONNECTED', `Could not connect to RabbitMQ at ${this.safeUrl}: ${reasonOf(error)}`, { cause: error });
    }
    this.log.info({ url: this.safeUrl }, 'Connected to RabbitMQ');
  }

  async assertWorkQueue(queue: string, options?: WorkQueueOptions): Promise<void> {
    const deadLetter = resolveWorkQueue(queue, options);
    const entry: QueueTopology = { deadLetter, patterns: this.topology.get(queue)?.patterns ?? new Set() };
    await this.withChannel(`declare queue "${queue}"`, (channel) => this.declareQueue(channel, queue, entry));
    this.remember(queue, entry);
  }

  sendToQueue(queue: string, body: unknown, options: PublishOptions = {}): Promise<void> {
    // mandatory: a queue that does not exist makes the broker return the message instead of dropping it.
    return this.publish('', queue, body, options, true, `queue "${queue}"`);
  }

  publishEvent(routingKey: string, body: unknown, options: PublishOptions = {}): Promise<void> {
    return this.publish(EVENTS_EXCHANGE, routingKey, body, options, false, `event "${routingKey}"`);
  }

  async consume<T>(queue: string, handler: Handler<T>, options?: ConsumeOptions): Promise<Consumer> {
    requireName('queue', queue);
    const prefetch = resolvePrefetch(options);
    const connection = this.requireConnection();
    const consumer = new RabbitMqConsumer(this, queue, handler as Handler<unknown>, prefetch);
    try {
      await consumer.start(connection);
    } catch (error) {
      if (errorCode(error) === 404) {
        throw new MessagingError('NOT_FOUND', `There is no queue "${queue}"; declare it with assertWorkQueue (or consumeEvents) first.`, { cause: error });
      }
      throw this.connection === connection
        ? new Error(`Could not consume queue "${queue}": ${reasonOf(error)}`, { cause: error })
        : new MessagingError('DISCONNECTED', `The RabbitMQ connection dropped while subscribing to queue "${queue}"; try again.`, { cause: error });
    }
    this.consumers.add(consumer);
    return consumer;
  }

  async consumeEvents<T>(queue: string, patterns: string[], handler: Handler<T>, options: ConsumeOptions & WorkQueueOptions = {}): Promise<Consumer> {
    if (patterns.length === 0) throw new RangeError(`consumeEvents("${queue}") needs at least one routing-key pattern.`);
    for (const pattern of patterns) requireName('pattern', pattern);
    resolvePrefetch(options);
    const deadLetter = resolveWorkQueue(queue, options);
    // Bindings add up, as they do in RabbitMQ: a pattern dropped from the list stays bound.
    const entry: QueueTopology = { deadLetter, patterns: new Set([...(this.topology.get(queue)?.patterns ?? []), ...patterns]) };
    await this.withChannel(`declare event queue "${queue}"`, (channel) => this.declareQueue(channel, queue, entry));
    this.remember(queue, entry);
    return this.consume(queue, handler, options);
  }

  isConnected(): boolean {
    return this.state === 'connected' && this.publisher !== undefined;
  }

  close(): Promise<void> {
    if (!this.closing) {
      this.state = 'closing';
      clearTimeout(this.reconnectTimer);
      this.closing = (async () => {
        await Promise.allSettled([...this.consumers].map((consumer) => consumer.cancel()));
        // Pending confirms settle by themselves, within publishTimeoutMs at worst.
        await Promise.allSettled([...this.pendingPublishes.values()].map((pending) => pending.done));
        await this.establishing?.catch(() => undefined);
        const connection = this.connection;
        this.connection = undefined;
        this.publisher = undefined;
        if (connection) await connection.close().catch(() => undefined);
        this.state = 'closed';
        this.log.info('RabbitMQ connection closed');
      })();
    }
    return this.closing;
  }

  /** The live connection, for consumers that resubscribe; undefined while reconnecting. */
  currentConnection(): ChannelModel | undefined {
    return this.state === 'connected' ? this.connection : undefined;
  }

  get retryDelayMs(): number {
    return this.reconnectDelayMs;
  }

  get maxRetryDelayMs(): number {
    return this.maxReconnectDelayMs;
  }

  /** The delivery limit of a queue this broker declared, for log lines. */
  maxDeliveriesOf(queue: string): number | undefined {
    return this.topology.get(queue)?.deadLetter?.maxDeliveries;
  }

  /** Declares a queue this broker knows (and its dead-letter queue and bindings) on `channel`. */
  async redeclare(channel: Channel, queue: string): Promise<void> {
    const entry = this.topology.get(queue);
    if (entry) await this.declareQueue(channel, queue, entry);
  }

  forget(consumer: RabbitMqConsumer): void {
    this.consumers.delete(consumer);
  }

  /** A consumer's channel closed while the connection stayed up (server cancel, channel error). */
  consumerChannelLost(consumer: RabbitMqConsumer, connection: ChannelModel): void {
    // Channels close just before their connection does: wait a turn to tell the two apart.
    setImmediate(() => {
      if (this.state !== 'connected' || this.connection !== connection || !this.consumers.has(consumer)) return;
      this.log.warn({ queue: consumer.queue }, 'RabbitMQ consumer channel closed; subscribing again');
      consumer.scheduleResume();
    });
  }

  private remember(queue: string, entry: QueueTopology): void {
    this.topology.set(queue, entry);
    if (entry.deadLetter && !this.topology.has(entry.deadLetter.deadLetterQueue)) {
      this.topology.set(entry.deadLetter.deadLetterQueue, { patterns: new Set() });
    }
  }

  private async declareQueue(channel: Channel, queue: string, entry: QueueTopology): Promise<void> {
    const args: Record<string, unknown> = { 'x-queue-type': 'quorum' };
    const { deadLetter } = entry;
    if (deadLetter) {
      const deadQueue = deadLetter.deadLetterQueue;
      await channel.assertQueue(deadQueue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
      await channel.bindQueue(deadQueue, DEAD_LETTER_EXCHANGE, deadQueue);
      // RabbitMQ dead-letters once a message has been returned more than the limit: the first
      // delivery plus `limit` redeliveries, hence maxDeliveries - 1.
      args['x-delivery-limit'] = deadLetter.maxDeliveries - 1;
      args['x-dead-letter-exchange'] = DEAD_LETTER_EXCHANGE;
      args['x-dead-letter-routing-key'] = deadQueue;
      args['x-dead-letter-strategy'] = 'at-least-once';
      args['x-overflow'] = 'reject-publish';
    }
    await channel.assertQueue(queue, { durable: true, arguments: args });
    for (const pattern of entry.patterns) await channel.bindQueue(queue, EVENTS_EXCHANGE, pattern);
  }

  private async declareTopology(channel: Channel): Promise<void> {
    await channel.assertExchange(EVENTS_EXCHANGE, 'topic', { durable: true });
    await channel.assertExchange(DEAD_LETTER_EXCHANGE, 'direct', { durable: true });
    for (const [queue, entry] of this.topology) await this.declareQueue(channel, queue, entry);
  }

  /** Opens the connection and the publishing channel, declares the topology, resumes consumers. */
  private establish(): Promise<void> {
    const attempt = (async () => {
      const connection = await connect(this.url, {
        timeout: this.connectTimeoutMs,
        clientProperties: { connection_name: this.connectionName },
      });
      let lost = false;
      connection.on('error', (error: Error) => this.log.warn({ err: error }, 'RabbitMQ connection error'));
      connection.on('blocked', (reason: string) => this.log.warn({ reason }, 'RabbitMQ blocked publishing (resource alarm)'));
      connection.on('unblocked', () => this.log.info('RabbitMQ unblocked publishing'));
      connection.on('close', (error?: Error) => {
        lost = true;
        if (this.connection === connection) this.connectionLost(error);
      });
      try {
        const publisher = await connection.createConfirmChannel();
        publisher.on('error', (error: Error) => this.log.warn({ err: error }, 'RabbitMQ publishing channel error'));
        publisher.on('return', (message: Message) => this.returned(message));
        publisher.on('close', () => {
          // Channels close just before their connection does: wait a turn to tell the two apart.
          // Alone, it is a channel error such as a deleted exchange, and starting over with a fresh
          // connection declares everything again.
          setImmediate(() => {
            if (this.publisher === publisher && this.connection === connection && this.state === 'connected') {
              this.log.warn('RabbitMQ publishing channel closed; reconnecting');
              connection.close().catch(() => undefined);
            }
          });
        });
        await this.declareTopology(publisher);
        if (lost) throw new Error('the connection closed during setup');
        if (this.state === 'closing' || this.state === 'closed') {
          await connection.close().catch(() => undefined);
          return;
        }
        this.connection = connection;
        this.publisher = publisher;
        this.state = 'connected';
        this.reconnectAttempts = 0;
      } catch (error) {
        await connection.close().catch(() => undefined);
        throw error;
      }
      await Promise.all([...this.consumers].map((consumer) => consumer.resume(connection)));
    })();
    this.establishing = attempt;
    return attempt.finally(() => {
      if (this.establishing === attempt) this.establishing = undefined;
    });
  }

  private connectionLost(error: Error | undefined): void {
    this.connection = undefined;
    this.publisher = undefined;
    for (const pending of this.pendingPublishes.values()) {
      pending.fail(new MessagingError('DISCONNECTED', 'The RabbitMQ connection dropped before the broker confirmed the message; it may or may not have been stored.'));
    }
    for (const consumer of this.consumers) consumer.detach();
    if (this.state === 'closing' || this.state === 'closed') return;
    this.state = 'reconnecting';
    this.log.warn({ err: error }, 'RabbitMQ connection lost; reconnecting');
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    const delay = backoff(this.reconnectDelayMs, this.maxReconnectDelayMs, this.reconnectAttempts++);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (this.state !== 'reconnecting') return;
      this.establish().then(
        () => {
          if (this.state === 'connected') this.log.info({ consumers: this.consumers.size }, 'Reconnected to RabbitMQ');
        },
        (error: unknown) => {
          if (this.state !== 'reconnecting') return;
          this.log.warn({ err: error, attempt: this.reconnectAttempts }, 'Reconnecting to RabbitMQ failed; trying again');
          this.scheduleReconnect();
        },
      );
    }, delay);
  }

  private publish(exchange: string, routingKey: string, body: unknown, options: PublishOptions, mandatory: boolean, target: string): Promise<void> {
    if (this.state === 'closing' || this.state === 'closed') {
      return Promise.reject(new MessagingError('CLOSED', `The message broker is closed; the message to ${target} was not sent.`));
    }
    let content: Buffer;
    try {
      requireName('routing key', routingKey);
      content = Buffer.from(serializeBody(body));
    } catch (error) {
      return Promise.reject(error);
    }
    const publisher = this.publisher;
    if (!publisher || this.state !== 'connected') {
      return Promise.reject(new MessagingError('DISCONNECTED', `Not connected to RabbitMQ (reconnecting); the message to ${target} was not sent.`));
    }
    const publishId = randomUUID();
    let pending!: PendingPublish;
    const done = new Promise<void>((resolve, reject) => {
      let settled = false;
      const finish = (error?: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.pendingPublishes.delete(publishId);
        if (error) reject(error);
        else resolve();
      };
      const timer = setTimeout(
        () => finish(new MessagingError('TIMEOUT', `RabbitMQ did not confirm the message to ${target} within ${this.publishTimeoutMs} ms; it may or may not have been stored.`)),
        this.publishTimeoutMs,
      );
      pending = { returned: false, done: undefined as unknown as Promise<void>, fail: finish };
      this.pendingPublishes.set(publishId, pending);
      try {
        publisher.publish(
          exchange,
          routingKey,
          content,
          {
            persistent: true,
            contentType: 'application/json',
            messageId: options.messageId ?? randomUUID(),
            timestamp: Math.floor(Date.now() / 1000),
            mandatory,
            headers: { [PUBLISH_ID_HEADER]: publishId },
          },
          (error: unknown) => {
            if (error) {
              const nacked = error instanceof Error && error.message === 'message nacked';
              finish(
                nacked
                  ? new MessagingError('NACKED', `RabbitMQ refused the message to ${target} (nack); publish it again later.`, { cause: error })
                  : new MessagingError('DISCONNECTED', `The RabbitMQ channel closed before the broker confirmed the message to ${target}; it may or may not have been stored.`, { cause: error }),
              );
            } else if (pending.returned) {
              finish(new MessagingError('UNROUTABLE', `There is no ${target}; declare it with assertWorkQueue first. The message was not stored.`));
            } else {
              finish();
            }
          },
        );
      } catch (error) {
        // amqplib throws at once when the channel is closing or closed.
        finish(new MessagingError('DISCONNECTED', `Not connected to RabbitMQ; the message to ${target} was not sent.`, { cause: error }));
      }
    });
    pending.done = done.catch(() => undefined);
    return done;
  }

  /** basic.return arrives before the confirm of the same message. */
  private returned(message: Message): void {
    const publishId = (message.properties.headers as Record<string, unknown> | undefined)?.[PUBLISH_ID_HEADER];
    const pending = typeof publishId === 'string' ? this.pendingPublishes.get(publishId) : undefined;
    if (pending) pending.returned = true;
  }

  /** Runs `work` on a short-lived channel, so a refused declaration never breaks publishing. */
  private async withChannel(what: string, work: (channel: Channel) => Promise<void>): Promise<void> {
    const connection = this.requireConnection();
    let channel: Channel;
    try {
      channel = await connection.createChannel();
    } catch (error) {
      throw new MessagingError('DISCONNECTED', `Not connected to RabbitMQ; could not ${what}.`, { cause: error });
    }
    channel.on('error', () => undefined); // reported through the rejected operation below
    try {
      await work(channel);
    } catch (error) {
      if (this.connection !== connection) throw new MessagingError('DISCONNECTED', `The RabbitMQ connection dropped; could not ${what}.`, { cause: error });
      throw new Error(`Could not ${what}: ${reasonOf(error)}`, { cause: error });
    } finally {
      await channel.close().catch(() => undefined);
    }
  }

  private requireConnection(): ChannelModel {
    if (this.state === 'closing' || this.state === 'closed') throw new MessagingError('CLOSED', 'The message broker is closed.');
    if (this.state !== 'connected' || !this.connection) throw new MessagingError('DISCONNECTED', 'Not connected to RabbitMQ (reconnecting); try again later.');
    return this.connection;
  }
}

class RabbitMqConsumer implements Consumer {
  private channel: Channel | undefined;
  private consumerTag: string | undefined;
  /** True from the moment a subscription starts until it is lost, so it never runs twice. */
  private subscribed = false;
  private resumeTimer: NodeJS.Timeout | undefined;
  private resumeAttempts = 0;
  private readonly inFlight = new Set<Promise<void>>();
  private starting: Promise<void> | undefined;
  private cancelling: Promise<void> | undefined;
  private readonly log: Logger;

  constructor(
    private readonly broker: RabbitMqBroker,
    readonly queue: string,
    private readonly handler: Handler<unknown>,
    private readonly prefetch: number,
  ) {
    this.log = broker.log.child({ queue });
  }

  /** Opens a channel on `connection` and subscribes; throws when it cannot. */
  async start(connection: ChannelModel): Promise<void> {
    const starting = this.subscribe(connection);
    this.starting = starting;
    try {
      await starting;
    } finally {
      if (this.starting === starting) this.starting = undefined;
    }
  }

  private async subscribe(connection: ChannelModel): Promise<void> {
    this.subscribed = true;
    let channel: Channel | undefined;
    try {
      channel = await connection.createChannel();
      const ownChannel = channel;
      let ready = false;
      channel.on('error', (error: Error) => this.log.warn({ err: error }, 'RabbitMQ consumer channel error'));
      channel.on('close', () => {
        if (!ready || this.channel !== ownChannel) return;
        this.channel = undefined;
        this.consumerTag = undefined;
        this.subscribed = false;
        this.broker.consumerChannelLost(this, connection);
      });
      await this.broker.redeclare(channel, this.queue);
      await channel.prefetch(this.prefetch);
      // Deliveries may arrive before this call returns, so the handler is given the channel itself.
      const { consumerTag } = await channel.consume(this.queue, (message) => this.receive(ownChannel, message), { noAck: false });
      this.channel = channel;
      this.consumerTag = consumerTag;
      ready = true;
      this.resumeAttempts = 0;
    } catch (error) {
      this.subscribed = false;
      this.channel = undefined;
      await channel?.close().catch(() => undefined);
      throw error;
    }
  }

  /** Subscribes again after a reconnect; on failure, tries again later by itself. */
  async resume(connection: ChannelModel): Promise<void> {
    clearTimeout(this.resumeTimer);
    this.resumeTimer = undefined;
    if (this.subscribed || this.cancelling) return;
    try {
      await this.start(connection);
      this.log.info('Consumer resumed');
    } catch (error) {
      if (this.cancelling || this.broker.currentConnection() !== connection) return;
      this.log.warn({ err: error }, 'Could not resume consumer; trying again');
      this.scheduleResume();
    }
  }

  scheduleResume(): void {
    if (this.cancelling || this.resumeTimer) return;
    const delay = backoff(this.broker.retryDelayMs, this.broker.maxRetryDelayMs, this.resumeAttempts++);
    this.resumeTimer = setTimeout(() => {
      this.resumeTimer = undefined;
      const connection = this.broker.currentConnection();
      // Without a connection, the broker resumes every consumer once it has reconnected.
      if (connection) void this.resume(connection);
    }, delay);
  }

  /** The connection is gone and this channel with it; the broker resumes us after reconnecting. */
  detach(): void {
    clearTimeout(this.resumeTimer);
    this.resumeTimer = undefined;
    this.channel = undefined;
    this.consumerTag = undefined;
    this.subscribed = false;
  }

  cancel(): Promise<void> {
    if (!this.cancelling) {
      clearTimeout(this.resumeTimer);
      this.broker.forget(this);
      this.cancelling = (async () => {
        // A subscription under way (a reconnect) finishes first, so that it is stopped too.
        await this.starting?.catch(() => undefined);
        await this.stopChannel();
      })();
    }
    return this.cancelling;
  }

  /** basic.cancel, then wait for the handlers in flight (they still ack), then close the channel. */
  private async stopChannel(): Promise<void> {
    const channel = this.channel;
    const consumerTag = this.consumerTag;
    if (channel && consumerTag) {
      this.consumerTag = undefined;
      await withTimeout(channel.cancel(consumerTag), CANCEL_TIMEOUT_MS).catch(() => undefined);
    }
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
    if (channel && this.channel === channel) {
      this.channel = undefined;
      await channel.close().catch(() => undefined);
    }
  }

  private receive(channel: Channel, message: ConsumeMessage | null): void {
    if (message === null) {
      // The server cancelled us (queue deleted...): the channel's close handler subscribes again.
      this.log.warn('RabbitMQ cancelled the consumer; subscribing again');
      channel.close().catch(() => undefined);
      return;
    }
    const messageId = message.properties.messageId ?? '';
    let body: unknown;
    try {
      body = JSON.parse(message.content.toString('utf8'));
    } catch (error) {
      this.log.error({ err: error, messageId }, 'Message body is not JSON; moved to the dead-letter queue');
      settle(channel, message, 'dead-letter', this.log);
      return;
    }
    const redeliveries = (message.properties.headers as Record<string, unknown> | undefined)?.['x-delivery-count'];
    const delivery: Delivery<unknown> = {
      body,
      // Quorum queues count returns in x-delivery-count, absent on the first delivery.
      deliveryCount: (typeof redeliveries === 'number' ? redeliveries : 0) + 1,
      messageId,
      routingKey: message.fields.routingKey,
    };
    const run: Promise<void> = Promise.resolve()
      .then(() => this.handler(delivery))
      .then(
        () => settle(channel, message, 'ack', this.log),
        (error: unknown) => {
          const limit = this.broker.maxDeliveriesOf(this.queue);
          const last = limit !== undefined && delivery.deliveryCount >= limit;
          this.log[last ? 'error' : 'warn'](
            { err: error, messageId, deliveryCount: delivery.deliveryCount },
            last ? 'Handler failed on the last allowed delivery; the broker dead-letters the message' : 'Handler failed; message returned to the queue',
          );
          settle(channel, message, 'requeue', this.log);
        },
      )
      .finally(() => this.inFlight.delete(run));
    this.inFlight.add(run);
  }
}

function settle(channel: Channel, message: ConsumeMessage, outcome: 'ack' | 'requeue' | 'dead-letter', log: Logger): void {
  try {
    if (outcome === 'ack') channel.ack(message);
    else channel.nack(message, false, outcome === 'requeue');
  } catch (error) {
    // The channel closed under us: the broker delivers the message again, to whoever consumes next.
    log.warn({ err: error, messageId: message.properties.messageId, outcome }, 'Could not settle a message: its channel is closed; it will be delivered again');
  }
}

/** Exponential backoff with ±20% jitter, so that many clients do not reconnect in step. */
function backoff(baseMs: number, maxMs: number, attempt: number): number {
  const delay = Math.min(baseMs * 2 ** Math.min(attempt, 20), maxMs);
  return Math.round(delay * (0.8 + Math.random() * 0.4));
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function errorCode(error: unknown): unknown {
  return typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
}

function reasonOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(an invalid AMQP URL)';
  }
}
