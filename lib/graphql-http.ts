import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import { HeaderMap, type ApolloServer, type BaseContext } from '@apollo/server';
import type { Logger } from 'pino';
import type { ErrorCode } from './errors.js';

/**
 * The HTTP front our servers share, on node:http alone: reading a JSON body with the checks
 * express.json() made (size, encoding, charset, strict JSON), and handing a request to Apollo
 * Server with `executeHTTPGraphQLRequest`, its framework-neutral entry point. Express and the
 * express integration cost about 0.25 ms of CPU per request here (routing, `url.parse`,
 * `res.send`), more than a task's whole insert: the router and the subgraphs answer every task.
 */

/** A request refused before GraphQL, with the status and code it is answered with. */
export class RequestError extends Error {
  constructor(
    readonly status: number,
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export interface JsonBodyOptions {
  /** The most bytes the body may have, after decompression. */
  limitBytes: number;
  /** Says why the raw bytes are refused (throws a RequestError), before they are parsed. */
  verify?: (body: Buffer) => void;
  /** The message of a 413. @default 'The request body is too large.' */
  tooLargeMessage?: string;
}

/** The media type of a Content-Type header, lower case, without parameters. */
function mediaType(contentType: string | undefined): string {
  return (contentType ?? '').split(';', 1)[0].trim().toLowerCase();
}

function charsetOf(contentType: string): string | undefined {
  const match = /;\s*charset\s*=\s*"?([^";\s]+)"?/i.exec(contentType);
  return match?.[1].toLowerCase();
}

const unreadable = () => new RequestError(400, 'BAD_REQUEST', 'The request body cannot be read (check its encoding and Content-Type).');

function decoded(req: IncomingMessage): Readable {
  const encoding = (req.headers['content-encoding'] ?? 'identity').toLowerCase().trim();
  switch (encoding) {
    case 'identity':
      return req;
    case 'gzip':
    case 'x-gzip':
      return req.pipe(createGunzip());
    case 'deflate':
      return req.pipe(createInflate());
    case 'br':
      return req.pipe(createBrotliDecompress());
    default:
      throw unreadable();
  }
}

/** The body's bytes, refused past `limitBytes` (counted after decompression) without buffering the rest. */
function readBytes(req: IncomingMessage, options: JsonBodyOptions): Promise<Buffer> {
  const tooLarge = () => new RequestError(413, 'PAYLOAD_TOO_LARGE', options.tooLargeMessage ?? 'The request body is too large.');
  const declared = Number(req.headers['content-length']);
  return new Promise<Buffer>((resolve, reject) => {
    let stream: Readable;
    try {
      stream = decoded(req);
    } catch (error) {
      reject(error);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const fail = (error: RequestError) => {
      if (settled) return;
      settled = true;
      if (stream !== req) {
        req.unpipe();
        stream.destroy();
      }
      // The rest of the body is read and dropped before the answer, so that a client still
      // sending gets its 413 or 400 instead of a broken pipe.
      if (req.readableEnded || req.destroyed) return reject(error);
      req.on('data', () => {});
      req.once('end', () => reject(error));
      req.once('close', () => reject(error));
      req.resume();
    };
    // A declared length past the limit is refused without buffering any of it.
    if (stream === req && declared > options.limitBytes) return fail(tooLarge());
    stream.on('data', (chunk: Buffer) => {
      if (settled) return;
      size += chunk.length;
      if (size > options.limitBytes) return fail(tooLarge());
      chunks.push(chunk);
    });
    stream.on('error', () => fail(unreadable()));
    if (stream !== req) req.on('error', () => fail(unreadable()));
    stream.on('end', () => {
      if (settled) return;
      settled = true;
      resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size));
    });
  });
}

/**
 * Reads a JSON request body as express.json() did: undefined when the Content-Type is not
 * `application/json` (the body is left unread, and Apollo's CSRF prevention refuses such requests);
 * `{}` for an empty body; otherwise the parsed object or array. Refuses with a RequestError: 413
 * past the limit, 400 for another charset than UTF-8, an unknown Content-Encoding, bytes `verify`
 * refuses, or JSON that does not parse or whose top level is not an object or array.
 */
export async function readJsonBody(req: IncomingMessage, options: JsonBodyOptions): Promise<unknown> {
  const contentType = req.headers['content-type'] ?? '';
  if (mediaType(contentType) !== 'application/json') return undefined;
  const charset = charsetOf(contentType);
  if (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8') throw unreadable();
  const bytes = await readBytes(req, options);
  if (bytes.length === 0) return {};
  options.verify?.(bytes);
  const text = bytes.toString('utf8');
  // Strict, as express.json() was: only an object or an array at the top level.
  const first = /\S/.exec(text)?.[0];
  if (first !== '{' && first !== '[') throw new RequestError(400, 'BAD_REQUEST', 'The request body is not valid JSON.');
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new RequestError(400, 'BAD_REQUEST', 'The request body is not valid JSON.');
  }
}

/** A request header as one string (Node gives repeated headers as an array only for a few names). */
export function headerValue(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value.join(', ') : value;
}

/**
 * A node:http server that runs `handle` for each request. Whatever it throws is logged and
 * answered 500 INTERNAL_SERVER_ERROR, or the connection is cut if the answer had already begun.
 */
export function createRequestServer(log: Logger, handle: (req: IncomingMessage, res: ServerResponse) => Promise<void>): Server {
  return createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      log.error({ err: error }, 'unexpected error before GraphQL');
      if (!res.headersSent) sendGraphQLError(res, 500, 'INTERNAL_SERVER_ERROR', 'Internal server error.');
      else res.destroy();
    });
  });
}

/**
 * Answers the probes, to GET and to HEAD (which some load balancers send): `/healthz` with
 * `{status: "ok", service, ...health}`, `/readyz` with every named check (200 when all are true,
 * else 503; a readiness that throws counts as `{readiness: false}`). True when the request was one.
 */
export async function answerProbe(
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
  service: string,
  readiness: () => Promise<Record<string, boolean>>,
  health: Record<string, unknown> = {},
): Promise<boolean> {
  if (req.method !== 'GET' && req.method !== 'HEAD') return false;
  if (path === '/healthz') {
    sendJson(res, 200, { status: 'ok', service, ...health });
    return true;
  }
  if (path !== '/readyz') return false;
  const checks = await readiness().catch(() => ({ readiness: false }));
  const ready = Object.values(checks).every(Boolean);
  sendJson(res, ready ? 200 : 503, { status: ready ? 'ready' : 'unavailable', service, checks });
  return true;
}

/** The path and query string of a request's URL, without parsing the rest. */
export function splitUrl(url: string | undefined): { path: string; search: string } {
  const raw = url ?? '/';
  const at = raw.indexOf('?');
  return at < 0 ? { path: raw, search: '' } : { path: raw.slice(0, at), search: raw.slice(at) };
}

/** Answers with a JSON body (and its length, so the connection is kept). */
export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.statusCode = status;
  res.setHeader('content-type', 'application/json; charset=utf-8');
  res.setHeader('content-length', Buffer.byteLength(text));
  res.end(text);
}

/** Answers `{"errors": [{message, extensions: {code}}]}`, the shape every GraphQL refusal has. */
export function sendGraphQLError(res: ServerResponse, status: number, code: ErrorCode, message: string): void {
  sendJson(res, status, { errors: [{ message, extensions: { code } }] });
}

/**
 * Runs one HTTP request through Apollo Server (`body` as read by readJsonBody, undefined for a GET
 * or a body that is not JSON) and writes its answer: status, headers and the body, streamed when
 * Apollo answers incrementally. Returns the code of the answer's first error, if it has one (for
 * the request metrics; undefined for an incremental answer).
 */
export async function executeGraphQL<C extends BaseContext>(
  apollo: ApolloServer<C>,
  req: IncomingMessage,
  res: ServerResponse,
  body: unknown,
  search: string,
  context: () => Promise<C>,
): Promise<string | undefined> {
  const headers = new HeaderMap();
  for (const name of Object.keys(req.headers)) {
    const value = headerValue(req, name);
    if (value !== undefined) headers.set(name, value);
  }
  const response = await apollo.executeHTTPGraphQLRequest({
    httpGraphQLRequest: { method: (req.method ?? 'GET').toUpperCase(), headers, search, body },
    context,
  });
  for (const [name, value] of response.headers) res.setHeader(name, value);
  res.statusCode = response.status ?? 200;
  if (response.body.kind === 'complete') {
    res.setHeader('content-length', Buffer.byteLength(response.body.string));
    res.end(response.body.string);
    return firstErrorCode(response.body.string);
  }
  for await (const chunk of response.body.asyncIterator) res.write(chunk);
  res.end();
  return undefined;
}

/**
 * The `extensions.code` of an answer's first error, read from the text Apollo Server wrote: it puts
 * `errors` first, and every error it sends has a code (formatError masks the rest), so the first
 * `"code"` key is the first error's. Undefined for an answer without errors.
 */
function firstErrorCode(body: string): string | undefined {
  if (!body.startsWith('{"errors":')) return undefined;
  return /"code":"([A-Z_]{1,64})"/.exec(body)?.[1] ?? 'INTERNAL_SERVER_ERROR';
}
