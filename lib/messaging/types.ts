/**
 * Messaging between services: work queues (a task to run) and events on a topic exchange
 * (`task.succeeded`...). Implementations: RabbitMQ through amqplib (durable queues, persistent
 * messages, publisher confirms, manual acks, bounded prefetch, a dead-letter queue for messages
 * delivered too many times) and in-process (one process, for `npm start` without AMQP_URL).
 *
 * Delivery is at least once: a message may arrive again after a crash or a reconnect, so handlers
 * must be idempotent (the messageId helps).
 */

/** The queue workers take tasks from. */
export const TASK_QUEUE = 'task.run';
/** Where messages of TASK_QUEUE go after MAX_DELIVERIES failed deliveries. */
export const TASK_DEAD_LETTER_QUEUE = 'task.run.dead';
/** The topic exchange for cross-service events. */
export const EVENTS_EXCHANGE = 'platform.events';
/**
 * The direct exchange every queue dead-letters to; each dead-letter queue is bound to it with its
 * own name as the routing key.
 */
export const DEAD_LETTER_EXCHANGE = 'platform.dead-letter';
/** Default of WorkQueueOptions.maxDeliveries. */
export const DEFAULT_MAX_DELIVERIES = 5;
/** Default of ConsumeOptions.prefetch. */
export const DEFAULT_PREFETCH = 10;

export interface PublishOptions {
  /** Deduplication aid for consumers (AMQP message-id). @default a random UUID */
  messageId?: string;
}

export interface Delivery<T> {
  /** The published body, parsed from JSON: a fresh object per delivery. */
  body: T;
  /** 1 on the first delivery, 2 on the second... (from x-delivery-count where the broker keeps it). */
  deliveryCount: number;
  /** The message id given at publish, or the one generated then ('' from a foreign publisher that set none). */
  messageId: string;
  /** The event's routing key (`task.succeeded`); for a work queue, the queue's name. */
  routingKey: string;
}

/**
 * What a handler's outcome means: resolve → ack; throw → the message is returned to the queue and
 * delivered again (counted), and after `maxDeliveries` it goes to the dead-letter queue instead.
 * A message whose body is not JSON never reaches a handler: it goes straight to the dead-letter queue.
 */
export type Handler<T> = (delivery: Delivery<T>) => Promise<void>;

export interface ConsumeOptions {
  /** Unacked messages a consumer holds at once (handlers running at once). @default 10 */
  prefetch?: number;
}

export interface Consumer {
  /**
   * Stops taking new messages and waits for the handlers in flight to settle (their ack or nack is
   * still sent). Messages not yet handed to this consumer stay in the queue.
   */
  cancel(): Promise<void>;
}

export interface WorkQueueOptions {
  /** Deliveries before a message is dead-lettered (at least 1). @default 5 */
  maxDeliveries?: number;
  /** Name of the dead-letter queue. @default `${queue}.dead` */
  deadLetterQueue?: string;
}

export interface MessageBroker {
  /**
   * Declares a durable work queue and its dead-letter queue if needed. Idempotent, but the options
   * must not change for an existing queue (RabbitMQ refuses different arguments). Rejects with
   * DISCONNECTED while the broker is reconnecting.
   */
  assertWorkQueue(queue: string, options?: WorkQueueOptions): Promise<void>;
  /**
   * Publishes a persistent message to a work queue; resolves once the broker has confirmed it.
   * Rejects with a MessagingError (never hangs): DISCONNECTED, TIMEOUT, NACKED, UNROUTABLE when the
   * queue does not exist, CLOSED, INVALID_BODY when the body is not JSON-serializable.
   */
  sendToQueue(queue: string, body: unknown, options?: PublishOptions): Promise<void>;
  /**
   * Publishes a persistent event to EVENTS_EXCHANGE with a routing key; resolves once confirmed
   * (an event no queue is bound to is confirmed and dropped). Rejects as sendToQueue does.
   */
  publishEvent(routingKey: string, body: unknown, options?: PublishOptions): Promise<void>;
  /**
   * Consumes a work queue with manual acks. Survives reconnects: consumption resumes by itself.
   * Rejects with NOT_FOUND when the queue does not exist, DISCONNECTED while reconnecting. A
   * dead-letter queue (`${queue}.dead`) can be consumed too; it has no delivery limit.
   */
  consume<T>(queue: string, handler: Handler<T>, options?: ConsumeOptions): Promise<Consumer>;
  /**
   * Consumes events: a durable queue `queue` bound to EVENTS_EXCHANGE for each routing-key pattern
   * (`task.*`, `task.#`, `task.succeeded`), with the same ack and dead-letter rules as work queues.
   * The queue keeps collecting events while no consumer is attached.
   */
  consumeEvents<T>(queue: string, patterns: string[], handler: Handler<T>, options?: ConsumeOptions & WorkQueueOptions): Promise<Consumer>;
  /** True when connected (for /readyz). */
  isConnected(): boolean;
  /** Cancels every consumer (waiting for their handlers), waits for pending confirms, disconnects. */
  close(): Promise<void>;
}
