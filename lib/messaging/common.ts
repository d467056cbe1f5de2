/** What both implementations share: option defaults and validation, and the JSON wire format. */
import { MessagingError } from './errors.js';
import { DEFAULT_MAX_DELIVERIES, DEFAULT_PREFETCH, type ConsumeOptions, type WorkQueueOptions } from './types.js';

export interface ResolvedWorkQueue {
  maxDeliveries: number;
  deadLetterQueue: string;
}

export function resolveWorkQueue(queue: string, options: WorkQueueOptions = {}): ResolvedWorkQueue {
  requireName('queue', queue);
  const maxDeliveries = options.maxDeliveries ?? DEFAULT_MAX_DELIVERIES;
  if (!Number.isInteger(maxDeliveries) || maxDeliveries < 1) {
    throw new RangeError(`maxDeliveries of queue "${queue}" must be an integer of at least 1 (got ${maxDeliveries}).`);
  }
  const deadLetterQueue = options.deadLetterQueue ?? `${queue}.dead`;
  requireName('deadLetterQueue', deadLetterQueue);
  if (deadLetterQueue === queue) throw new RangeError(`The dead-letter queue of "${queue}" cannot be the queue itself.`);
  return { maxDeliveries, deadLetterQueue };
}

export function resolvePrefetch(options: ConsumeOptions = {}): number {
  const prefetch = options.prefetch ?? DEFAULT_PREFETCH;
  // RabbitMQ's basic.qos prefetch-count is an unsigned short; 0 would mean "unbounded".
  if (!Number.isInteger(prefetch) || prefetch < 1 || prefetch > 65_535) {
    throw new RangeError(`prefetch must be an integer between 1 and 65535 (got ${prefetch}).`);
  }
  return prefetch;
}

export function requireName(what: string, name: string): void {
  if (typeof name !== 'string' || name.length === 0 || Buffer.byteLength(name) > 255) {
    throw new RangeError(`${what} must be a non-empty name of at most 255 bytes (got ${JSON.stringify(name)}).`);
  }
}

/** Serializes a body for the wire, refusing what JSON cannot carry. */
export function serializeBody(body: unknown): string {
  let json: string | undefined;
  try {
    json = JSON.stringify(body);
  } catch (error) {
    throw new MessagingError('INVALID_BODY', `The message body cannot be serialized as JSON: ${(error as Error).message}`, { cause: error });
  }
  if (json === undefined) throw new MessagingError('INVALID_BODY', `The message body cannot be serialized as JSON (got ${typeof body}).`);
  return json;
}
