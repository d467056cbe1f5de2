/**
 * The broker for one process (`npm start` without AMQP_URL), with RabbitMQ's semantics: FIFO work
 * queues, bounded prefetch, ack on resolve, redelivery on throw, dead-lettering after
 * maxDeliveries, topic routing with `*` and `#`. Messages live in memory: they do not survive the
 * process, which is the point of using RabbitMQ in production.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { requireName, resolvePrefetch, resolveWorkQueue, serializeBody } from './common.js';
import { MessagingError } from './errors.js';
import type { ConsumeOptions, Consumer, Delivery, Handler, MessageBroker, PublishOptions, WorkQueueOptions } from './types.js';

export interface InProcessBrokerOptions {
  /** Where dead-lettering and failed handlers are reported. @default silent */
  log?: Logger;
}

interface StoredMessage {
  /** The body as JSON: every delivery parses its own copy, so nobody shares objects. */
  json: string;
  messageId: string;
  routingKey: string;
  /** Deliveries so far. */
  deliveries: number;
}

interface QueueState {
  name: string;
  /** Unset for a queue that never dead-letters (a dead-letter queue). */
  deadLetter?: { queue: string; maxDeliveries: number };
  /** Routing-key patterns binding it to the events exchange. */
  patterns: Set<string>;
  messages: StoredMessage[];
  consumers: InProcessConsumer[];
  /** Round-robin position among consumers. */
  turn: number;
  dispatchScheduled: boolean;
}

export function createInProcessBroker(options: InProcessBrokerOptions = {}): MessageBroker {
  return new InProcessBroker(options.log);
}

class InProcessBroker implements MessageBroker {
  private readonly queues = new Map<string, QueueState>();
  private readonly consumers = new Set<InProcessConsumer>();
  private closed = false;

  constructor(private readonly log: Logger | undefined) {}

  async assertWorkQueue(queue: string, options?: WorkQueueOptions): Promise<void> {
    this.ensureOpen();
    const { maxDeliveries, deadLetterQueue } = resolveWorkQueue(queue, options);
    this.declare(deadLetterQueue);
    this.declare(queue).deadLetter = { queue: deadLetterQueue, maxDeliveries };
  }

  async sendToQueue(queue: string, body: unknown, options: PublishOptions = {}): Promise<void> {
    this.ensureOpen();
    const json = serializeBody(body);
    const state = this.queues.get(queue);
    if (!state) throw new MessagingError('UNROUTABLE', `There is no queue "${queue}"; declare it with assertWorkQueue first. The message was not sent.`);
    this.enqueue(state, { json, messageId: options.messageId ?? randomUUID(), routingKey: queue, deliveries: 0 });
  }

  async publishEvent(routingKey: string, body: unknown, options: PublishOptions = {}): Promise<void> {
    this.ensureOpen();
    requireName('routingKey', routingKey);
    const json = serializeBody(body);
    const messageId = options.messageId ?? randomUUID();
    for (const state of this.queues.values()) {
      if ([...state.patterns].some((pattern) => topicMatches(pattern, routingKey))) {
        this.enqueue(state, { json, messageId, routingKey, deliveries: 0 });
      }
    }
  }

  async consume<T>(queue: string, handler: Handler<T>, options?: ConsumeOptions): Promise<Consumer> {
    this.ensureOpen();
    const prefetch = resolvePrefetch(options);
    const state = this.queues.get(queue);
    if (!state) throw new MessagingError('NOT_FOUND', `There is no queue "${queue}"; declare it with assertWorkQueue (or consumeEvents) first.`);
    const consumer = new InProcessConsumer(this, state, handler as Handler<unknown>, prefetch);
    state.consumers.push(consumer);
    this.consumers.add(consumer);
    this.scheduleDispatch(state);
    return consumer;
  }

  async consumeEvents<T>(queue: string, patterns: string[], handler: Handler<T>, options: ConsumeOptions & WorkQueueOptions = {}): Promise<Consumer> {
    if (patterns.length === 0) throw new RangeError(`consumeEvents("${queue}") needs at least one routing-key pattern.`);
    for (const pattern of patterns) requireName('pattern', pattern);
    await this.assertWorkQueue(queue, options);
    const state = this.queues.get(queue)!;
    for (const pattern of patterns) state.patterns.add(pattern);
    return this.consume(queue, handler, options);
  }

  isConnected(): boolean {
    return !this.closed;
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.consumers].map((consumer) => consumer.cancel()));
  }

  /** Called by a consumer that stops. */
  detach(consumer: InProcessConsumer, state: QueueState): void {
    this.consumers.delete(consumer);
    state.consumers = state.consumers.filter((other) => other !== consumer);
  }

  /** Called when a handler settles: ack, redeliver or dead-letter, then hand out more. */
  settle(state: QueueState, message: StoredMessage, error: unknown): void {
    if (error !== undefined) {
      const deadLetter = state.deadLetter;
      if (deadLetter && message.deliveries >= deadLetter.maxDeliveries) {
        this.log?.error({ err: error, queue: state.name, messageId: message.messageId, deliveries: message.deliveries }, `Handler failed on the last allowed delivery; message moved to ${deadLetter.queue}`);
        const target = this.queues.get(deadLetter.queue)!;
        this.enqueue(target, { ...message, routingKey: deadLetter.queue, deliveries: 0 });
      } else {
        this.log?.warn({ err: error, queue: state.name, messageId: message.messageId, deliveries: message.deliveries }, 'Handler failed; message returned to the queue');
        // Back to the head, as RabbitMQ requeues: the next consumer with room gets it first.
        state.messages.unshift(message);
      }
    }
    this.scheduleDispatch(state);
  }

  private declare(name: string): QueueState {
    let state = this.queues.get(name);
    if (!state) {
      state = { name, patterns: new Set(), messages: [], consumers: [], turn: 0, dispatchScheduled: false };
      this.queues.set(name, state);
    }
    return state;
  }

  private enqueue(state: QueueState, message: StoredMessage): void {
    state.messages.push(message);
    this.scheduleDispatch(state);
  }

  /** Handlers never run inside the publisher's call stack: dispatch waits for the next turn of the loop. */
  private scheduleDispatch(state: QueueState): void {
    if (state.dispatchScheduled) return;
    state.dispatchScheduled = true;
    setImmediate(() => {
      state.dispatchScheduled = false;
      this.dispatch(state);
    });
  }

  private dispatch(state: QueueState): void {
    while (state.messages.length > 0) {
      const consumer = this.nextConsumerWithRoom(state);
      if (!consumer) return;
      consumer.deliver(state.messages.shift()!);
    }
  }

  private nextConsumerWithRoom(state: QueueState): InProcessConsumer | undefined {
    const { consumers } = state;
    for (let i = 0; i < consumers.length; i++) {
      const consumer = consumers[(state.turn + i) % consumers.length];
      if (consumer.hasRoom()) {
        state.turn = (state.turn + i + 1) % consumers.length;
        return consumer;
      }
    }
    return undefined;
  }

  private ensureOpen(): void {
    if (this.closed) throw new MessagingError('CLOSED', 'The message broker is closed.');
  }
}

class InProcessConsumer implements Consumer {
  private readonly inFlight = new Set<Promise<void>>();
  private active = true;
  private cancelling: Promise<void> | undefined;

  constructor(
    private readonly broker: InProcessBroker,
    private readonly state: QueueState,
    private readonly handler: Handler<unknown>,
    private readonly prefetch: number,
  ) {}

  hasRoom(): boolean {
    return this.active && this.inFlight.size < this.prefetch;
  }

  deliver(message: StoredMessage): void {
    message.deliveries += 1;
    const delivery: Delivery<unknown> = {
      body: JSON.parse(message.json),
      deliveryCount: message.deliveries,
      messageId: message.messageId,
      routingKey: message.routingKey,
    };
    // The handler starts on a later microtask, so `run` exists before it can settle.
    const run: Promise<void> = Promise.resolve()
      .then(() => this.handler(delivery))
      // `throw undefined` must still count as a failure.
      .then(() => undefined, (error: unknown) => error ?? new Error('The handler threw undefined'))
      .then((failure) => {
        this.inFlight.delete(run);
        this.broker.settle(this.state, message, failure);
      });
    this.inFlight.add(run);
  }

  cancel(): Promise<void> {
    if (!this.cancelling) {
      this.active = false;
      this.broker.detach(this, this.state);
      this.cancelling = (async () => {
        while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
      })();
    }
    return this.cancelling;
  }
}

/**
 * AMQP topic matching: words separated by dots, `*` matches exactly one word, `#` zero or more.
 */
export function topicMatches(pattern: string, routingKey: string): boolean {
  const want = pattern.split('.');
  const have = routingKey.split('.');
  const match = (i: number, j: number): boolean => {
    if (i === want.length) return j === have.length;
    if (want[i] === '#') return match(i + 1, j) || (j < have.length && match(i, j + 1));
    if (j === have.length) return false;
    return (want[i] === '*' || want[i] === have[j]) && match(i + 1, j + 1);
  };
  return match(0, 0);
}
