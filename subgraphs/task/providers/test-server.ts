/**
 * A local HTTP server for the provider tests: the real SDKs talk to it over a live port, and it
 * records what they sent and when they hung up. Test support only; nothing in production imports it.
 */
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { StreamChunk } from './types.js';

export interface RecordedRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  /** The parsed JSON body, or the raw text when it was not JSON. */
  body: unknown;
  /** `performance.now()` when the request arrived. */
  receivedAt: number;
  /** Resolves with `performance.now()` once the response is closed, finished or not. */
  closed: Promise<number>;
  /** True once the client went away before the response was finished. */
  abortedByClient: boolean;
}

/** Answers the `index`-th request (0-based). It may leave the response open to simulate a stall. */
export type Handler = (request: RecordedRequest, res: ServerResponse, index: number) => void | Promise<void>;

export interface TestServer {
  /** `http://127.0.0.1:<port>`. */
  origin: string;
  requests: RecordedRequest[];
  /** Destroys open connections (hanging responses included) and stops listening. */
  close(): Promise<void>;
}

export async function startTestServer(handler: Handler): Promise<TestServer> {
  const requests: RecordedRequest[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      let body: unknown = text;
      try {
        body = JSON.parse(text);
      } catch {
        // Kept as text.
      }
      let resolveClosed!: (at: number) => void;
      const recorded: RecordedRequest = {
        method: req.method ?? '',
        path: req.url ?? '',
        headers: req.headers,
        body,
        receivedAt: performance.now(),
        closed: new Promise((resolve) => (resolveClosed = resolve)),
        abortedByClient: false,
      };
      res.on('close', () => {
        if (!res.writableFinished) recorded.abortedByClient = true;
        resolveClosed(performance.now());
      });
      const index = requests.push(recorded) - 1;
      Promise.resolve(handler(recorded, res, index)).catch((error: unknown) => {
        if (!res.headersSent) res.writeHead(599);
        res.end(String(error));
      });
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Starts an event stream response. */
export function startEventStream(res: ServerResponse): void {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
  res.flushHeaders();
}

/** Writes one SSE event: `event: <name>` when given, then `data: <JSON or raw text>`. */
export function writeEvent(res: ServerResponse, data: unknown, event?: string): void {
  const payload = typeof data === 'string' ? data : JSON.stringify(data);
  res.write(`${event ? `event: ${event}\n` : ''}data: ${payload}\n\n`);
}

/** Answers with an error status, a JSON body and optional headers. */
export function writeJsonError(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

/** A port nothing listens on (just closed), to provoke a refused connection. */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export interface Collected {
  /** The deltas joined. */
  text: string;
  deltas: number;
  usage: { promptTokens: number; completionTokens: number } | undefined;
  /** What the stream threw, if anything. */
  error: unknown;
}

/** Reads a stream to its end (or its error); `onDelta` sees each delta's 1-based number. */
export async function collect(
  stream: AsyncIterable<StreamChunk>,
  onDelta?: (count: number) => void,
): Promise<Collected> {
  const result: Collected = { text: '', deltas: 0, usage: undefined, error: undefined };
  try {
    for await (const chunk of stream) {
      if (chunk.type === 'delta') {
        result.text += chunk.text;
        result.deltas++;
        onDelta?.(result.deltas);
      } else {
        result.usage = { promptTokens: chunk.promptTokens, completionTokens: chunk.completionTokens };
      }
    }
  } catch (error) {
    result.error = error;
  }
  return result;
}
