/** The message broker for this process: RabbitMQ when AMQP_URL is set, else in-process. */
import type { Logger } from 'pino';
import { createInProcessBroker } from './in-process.js';
import { connectRabbitMq } from './rabbitmq.js';
import type { MessageBroker } from './types.js';

export interface CreateBrokerOptions {
  /** AMQP_URL; without it, messages stay inside this process. */
  amqpUrl?: string;
  log: Logger;
  /** Passed to RabbitMQ as the connection's name. @default 'agent-platform' */
  connectionName?: string;
}

export async function createBroker(options: CreateBrokerOptions): Promise<MessageBroker> {
  if (options.amqpUrl) return connectRabbitMq({ url: options.amqpUrl, log: options.log, connectionName: options.connectionName });
  options.log.info('AMQP_URL is not set: using the in-process message broker (messages do not survive a restart)');
  return createInProcessBroker({ log: options.log });
}

export * from './types.js';
export { MessagingError, MESSAGING_ERROR_CODES, isRetryable, type MessagingErrorCode } from './errors.js';
export { connectRabbitMq, type RabbitMqOptions } from './rabbitmq.js';
export { createInProcessBroker, topicMatches, type InProcessBrokerOptions } from './in-process.js';
