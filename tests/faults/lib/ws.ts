import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

/** graphql-ws as clients use it, and a raw socket for what well-behaved clients never send. */

export const GRAPHQL_WS_PROTOCOL = 'graphql-transport-ws';

export interface SubscriptionOutcome {
  /** `data` of every `next` message. */
  events: unknown[];
  /** Errors of `next` or `error` messages, and the close event when the socket was refused. */
  errors: unknown[];
  /** The close code when the connection itself ended the subscription. */
  closeCode?: number;
  /** Everything the server sent, as one string, for leak and stack-trace checks. */
  text: string;
}

/**
 * Runs one subscription with the official client until it completes, errors or `timeoutMs` passes,
 * then disposes the client. `credential` goes in connectionParams as "Bearer <credential>".
 */
export async function runSubscription(
  wsUrl: string,
  credential: string | undefined,
  query: string,
  variables: Record<string, unknown>,
  timeoutMs = 15_000,
): Promise<SubscriptionOutcome> {
  const outcome: SubscriptionOutcome = { events: [], errors: [], text: '' };
  const client = createClient({
    url: wsUrl,
    webSocketImpl: WebSocket,
    connectionParams: credential ? { authorization: `Bearer ${credential}` } : {},
    retryAttempts: 0,
    lazy: true,
    on: {
      message: (message) => {
        outcome.text += `${JSON.stringify(message)}\n`;
      },
      closed: (event) => {
        const { code, reason } = event as { code?: number; reason?: string };
        if (code !== undefined && code !== 1000) {
          outcome.closeCode = code;
          outcome.text += `close ${code} ${reason ?? ''}\n`;
        }
      },
    },
  });
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      (async () => {
        try {
          for await (const result of client.iterate({ query, variables })) {
            if (result.errors) outcome.errors.push(...result.errors);
            if (result.data) outcome.events.push(result.data);
          }
        } catch (error) {
          outcome.errors.push(error);
        }
      })(),
      new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          outcome.errors.push(new Error(`no completion within ${timeoutMs} ms`));
          resolve();
        }, timeoutMs);
      }),
    ]);
  } finally {
    clearTimeout(timer);
    await client.dispose();
  }
  return outcome;
}

/** A socket speaking (or abusing) graphql-transport-ws by hand. */
export interface RawSocket {
  socket: WebSocket;
  /** Parsed JSON of every text message received (unparseable ones as strings). */
  messages: unknown[];
  /** Everything received and the close reason, for stack-trace checks. */
  text(): string;
  /** Resolves with the close code and reason once the socket has closed. */
  closed: Promise<{ code: number; reason: string }>;
  send(data: string | Buffer | object): void;
  /** Waits for a message matching `predicate` (or the close, which rejects). */
  next(predicate: (message: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  close(): Promise<void>;
}

export function openRawSocket(url: string, options: { protocol?: string | null; headers?: Record<string, string>; maxPayload?: number } = {}): Promise<RawSocket> {
  const protocol = options.protocol === undefined ? GRAPHQL_WS_PROTOCOL : options.protocol;
  const socket = new WebSocket(url, protocol === null ? [] : [protocol], { headers: options.headers });
  const messages: unknown[] = [];
  let received = '';
  const waiters = new Set<() => void>();
  let closeInfo: { code: number; reason: string } | undefined;
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    socket.on('close', (code, reason) => {
      closeInfo = { code, reason: String(reason) };
      received += `close ${code} ${String(reason)}\n`;
      for (const wake of waiters) wake();
      resolve(closeInfo);
    });
  });
  socket.on('message', (data) => {
    const text = String(data);
    received += `${text}\n`;
    try {
      messages.push(JSON.parse(text));
    } catch {
      messages.push(text);
    }
    for (const wake of waiters) wake();
  });
  // Errors (refused upgrade, reset) show up as the close that follows.
  socket.on('error', () => undefined);
  const raw: RawSocket = {
    socket,
    messages,
    text: () => received,
    closed,
    send: (data) => socket.send(typeof data === 'string' || Buffer.isBuffer(data) ? data : JSON.stringify(data)),
    next: (predicate, timeoutMs = 10_000) =>
      new Promise((resolve, reject) => {
        let seen = 0;
        const check = () => {
          for (; seen < messages.length; seen++) {
            const message = messages[seen];
            if (message && typeof message === 'object' && predicate(message as Record<string, unknown>)) {
              cleanup();
              return resolve(message as Record<string, unknown>);
            }
          }
          if (closeInfo) {
            cleanup();
            reject(new Error(`socket closed (${closeInfo.code} ${closeInfo.reason}) before the expected message`));
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`no expected message within ${timeoutMs} ms`));
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      }),
    close: async () => {
      if (socket.readyState === WebSocket.CLOSED) return;
      if (socket.readyState === WebSocket.CONNECTING) {
        socket.terminate();
      } else {
        socket.close(1000);
      }
      const timer = setTimeout(() => socket.terminate(), 2000);
      await closed;
      clearTimeout(timer);
    },
  };
  return new Promise((resolve) => {
    // Open or refused: either way the caller inspects what happened.
    socket.once('open', () => resolve(raw));
    socket.once('close', () => resolve(raw));
  });
}

/** Opens a socket and acknowledges it with `credential` ("Bearer …" in connectionParams). */
export async function openAcknowledged(url: string, credential: string, headers: Record<string, string> = {}): Promise<RawSocket> {
  const raw = await openRawSocket(url, { headers });
  raw.send({ type: 'connection_init', payload: { authorization: `Bearer ${credential}` } });
  await raw.next((message) => message.type === 'connection_ack');
  return raw;
}
