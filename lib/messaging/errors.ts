/**
 * Why a broker call failed. Callers decide by code: an outbox relay retries DISCONNECTED, TIMEOUT,
 * NACKED and UNROUTABLE (the queue may be declared later) and leaves the row for the next pass;
 * NOT_FOUND and INVALID_BODY are bugs or missing topology.
 */
export const MESSAGING_ERROR_CODES = [
  /** Not connected to the broker right now (it reconnects by itself); try again later. */
  'DISCONNECTED',
  /** The broker did not confirm in time; the message may or may not have been stored. */
  'TIMEOUT',
  /** The broker refused the message (nack). */
  'NACKED',
  /** No queue of that name: the message would have been dropped. */
  'UNROUTABLE',
  /** consume() on a queue that does not exist. */
  'NOT_FOUND',
  /** The body cannot be serialized as JSON. */
  'INVALID_BODY',
  /** The broker was closed by its owner. */
  'CLOSED',
] as const;
export type MessagingErrorCode = (typeof MESSAGING_ERROR_CODES)[number];

export class MessagingError extends Error {
  override readonly name = 'MessagingError';
  constructor(
    readonly code: MessagingErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

const RETRYABLE: ReadonlySet<MessagingErrorCode> = new Set(['DISCONNECTED', 'TIMEOUT', 'NACKED', 'UNROUTABLE']);

/** True for the publish failures worth trying again later: the message is not known to be stored. */
export function isRetryable(error: unknown): boolean {
  return error instanceof MessagingError && RETRYABLE.has(error.code);
}
