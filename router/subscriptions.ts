import { randomUUID } from 'node:crypto';
import type { IncomingMessage, Server } from 'node:http';
import type { GraphQLError, GraphQLFormattedError } from 'graphql';
import { CloseCode, handleProtocols, makeServer } from 'graphql-ws';
import type { Logger } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import { appError, maskError } from '../lib/errors.js';
import { headerValue } from '../lib/graphql-http.js';
import type { Principal } from '../lib/principal.js';
import { Authenticator, principalId, type Credentials } from './authenticate.js';
import type { RouterConfig } from './config.js';
import type { RateLimiter } from './rate-limit.js';
import type { SubscriptionExecutor, TaskSubscription } from './subscription-executor.js';

/**
 * graphql-ws at ws://host:PORT/graphql, on the router's own HTTP server: authenticates each socket
 * at `connection_init`, rate-limits connections and subscribe messages like HTTP requests, bounds
 * what one socket may hold, and hands every subscribe message to the {@link SubscriptionExecutor}.
 */
export interface SubscriptionServerOptions {
  /** The router's HTTP server: sockets upgrade on the same port and path as GraphQL over HTTP. */
  httpServer: Server;
  /** Checks, authorizes and runs each subscribe message. */
  executor: SubscriptionExecutor;
  /** The same one HTTP requests use: JWTs and API keys, with their caches. */
  authenticator: Authenticator;
  /** The HTTP rate limiter, sharing its windows; absent when rate limiting is off. */
  limiter?: RateLimiter;
  /** Connections and subscribe messages count per principal like requests; refused connections per IP. */
  rateLimit: Pick<RouterConfig['rateLimit'], 'perMinute' | 'anonPerMinute'>;
  /** Message size, subscriptions per socket, connection_init timeout, keep-alive. */
  settings: RouterConfig['subscriptions'];
  /** Proxies trusted to set X-Forwarded-For (TRUST_PROXY), for per-IP limits. */
  trustProxyHops: number;
  log: Logger;
  /** @default '/graphql' */
  path?: string;
}

export interface SubscriptionServer {
  /** Open sockets (for tests and metrics). */
  readonly sockets: number;
  /** Subscriptions running now. */
  readonly subscriptions: number;
  /** Events sent to subscribers since the server started. */
  readonly eventsSent: number;
  /**
   * Stops accepting sockets and closes the open ones with 1001 (Going Away), so clients reconnect
   * to another replica and resume with `afterSequence`; sockets that do not close in `graceMs` are
   * dropped.
   */
  close(graceMs?: number): Promise<void>;
}

/** What the router keeps per acknowledged socket. */
interface Connection {
  id: string;
  principal: Principal;
  principalId: string;
  /** Kept (in memory only) so each subscribe re-checks them: an access token expires, an API key is revoked. */
  credentials: Credentials;
  clientIp: string;
  /** Running subscriptions by graphql-ws id. */
  subscriptions: Map<string, TaskSubscription>;
  /** The close code once the socket closed. */
  closeCode?: number;
  /** Subscribe messages so far, numbering the request ids of this socket's gateway fetches. */
  subscribes: number;
}

/** graphql-ws's per-socket `ctx.extra`. */
interface SocketExtra {
  readonly socket: WebSocket;
  /** The HTTP upgrade request (headers, client address), let go once the socket is authenticated. */
  request?: IncomingMessage;
  /** Set once the socket is authenticated. */
  connection?: Connection;
}

/** Close codes the router uses besides graphql-ws's own (4400, 4403, 4408, 4409, 4429, 4500). */
export const CLOSE_UNAUTHORIZED = CloseCode.Unauthorized; // 4401
/** Standard WebSocket "Try Again Later": rate-limited or the credential service is down; clients retry with backoff. */
export const CLOSE_TRY_AGAIN_LATER = 1013;
export const CLOSE_GOING_AWAY = 1001;

/** Keep-alive pings go out in this many slices per period rather than all at once. */
const HEARTBEAT_SLICES = 30;

const MAX_CLOSE_REASON_BYTES = 123;

/** A close reason within the 123 bytes WebSocket allows (ws throws on longer ones). */
export function closeReason(reason: string): string {
  if (Buffer.byteLength(reason) <= MAX_CLOSE_REASON_BYTES) return reason;
  // "…" takes 3 bytes.
  let cut = reason.slice(0, MAX_CLOSE_REASON_BYTES);
  while (Buffer.byteLength(cut) > MAX_CLOSE_REASON_BYTES - 3) cut = cut.slice(0, -1);
  return `${cut}…`;
}

function stringParam(params: Record<string, unknown>, ...names: string[]): string | undefined {
  for (const name of names) {
    const value = params[name];
    if (value === undefined || value === null) continue;
    if (typeof value !== 'string') throw new TypeError(`connectionParams.${name} must be a string.`);
    return value;
  }
  return undefined;
}

/**
 * The credentials of a socket: from `connection_init`'s payload (`authorization` / `Authorization`:
 * "Bearer <token or API key>", `x-api-key`, or a bare `token`), else from the upgrade request's
 * `Authorization` or `x-api-key` header (clients that can set headers on the handshake).
 */
export function credentialsOf(params: Record<string, unknown> | undefined, request: IncomingMessage): Credentials {
  const given = params ?? {};
  const authorization = stringParam(given, 'authorization', 'Authorization');
  const apiKey = stringParam(given, 'x-api-key', 'X-Api-Key', 'apiKey');
  const token = stringParam(given, 'token');
  if (authorization !== undefined || apiKey !== undefined) return { authorization, apiKey };
  if (token !== undefined) return { authorization: `Bearer ${token}` };
  return { authorization: headerValue(request, 'authorization'), apiKey: headerValue(request, 'x-api-key') };
}

/** The client's address through `hops` trusted proxies (as express computes `req.ip` for HTTP). */
export function clientIpOf(request: IncomingMessage, hops: number): string {
  let ip = request.socket.remoteAddress ?? 'unknown';
  if (hops > 0) {
    const forwarded = headerValue(request, 'x-forwarded-for')
      ?.split(',')
      .map((part) => part.trim())
      .filter(Boolean)
      .reverse();
    if (forwarded?.length) ip = forwarded[Math.min(hops, forwarded.length) - 1];
  }
  return ip.startsWith('::ffff:') ? ip.slice(7) : ip;
}

function codeOf(error: unknown): string {
  const code = (error as { extensions?: { code?: unknown } } | null)?.extensions?.code;
  return typeof code === 'string' ? code : 'INTERNAL_SERVER_ERROR';
}

export function startSubscriptionServer(options: SubscriptionServerOptions): SubscriptionServer {
  const { executor, authenticator, limiter, rateLimit, settings, log } = options;
  const wss = new WebSocketServer({ server: options.httpServer, path: options.path ?? '/graphql', maxPayload: settings.maxMessageBytes, handleProtocols });
  // Errors of the HTTP server itself are re-emitted here.
  wss.on('error', (error) => log.error({ err: error }, 'websocket server error'));
  const format = (error: GraphQLError): GraphQLFormattedError => maskError(log, error.toJSON(), error);

  /** Closes a socket before it is acknowledged; graphql-ws's own 4403 after `false` is then a no-op. */
  function refuse(socket: WebSocket, code: number, reason: string): false {
    socket.close(code, closeReason(reason));
    return false;
  }

  /** Refused credentials count against the address, as for HTTP, so guessing keys costs the same. */
  async function refuseByAddress(socket: WebSocket, clientIp: string, reason: string): Promise<false> {
    const decision = limiter && (await limiter.consume(`ip:${clientIp}`, rateLimit.anonPerMinute));
    if (decision && !decision.allowed) return refuse(socket, CLOSE_TRY_AGAIN_LATER, `Too many requests; retry in ${decision.resetSeconds} s.`);
    return refuse(socket, CLOSE_UNAUTHORIZED, reason);
  }

  // For the metrics: subscriptions running now, events sent since the start.
  let openSubscriptions = 0;
  let eventsDelivered = 0;

  /** One log line per subscription that ran: who, which task, how many events, how long, why it ended. */
  function ended(connection: Connection, id: string, socketOpen: boolean): void {
    const subscription = connection.subscriptions.get(id);
    if (!subscription) return;
    connection.subscriptions.delete(id);
    openSubscriptions -= 1;
    subscription.close();
    const reason = subscription.errorCode
      ? `error ${subscription.errorCode}`
      : subscription.completed
        ? 'completed'
        : socketOpen
          ? 'completed by client'
          : `socket closed ${connection.closeCode ?? ''}`.trim();
    log.info(
      {
        subscriptionId: id.slice(0, 100),
        connectionId: connection.id,
        principal: connection.principalId,
        taskId: subscription.taskId,
        eventsSent: subscription.eventsSent,
        durationMs: Date.now() - subscription.startedAt,
        reason,
      },
      'subscription ended',
    );
  }

  const server = makeServer<Record<string, unknown>, SocketExtra>({
    connectionInitWaitTimeout: settings.connectionInitTimeoutMs,
    subscribe: (args) => executor.subscribe(args),

    async onConnect(ctx) {
      const { socket, request } = ctx.extra;
      if (!request) return false;
      const clientIp = clientIpOf(request, options.trustProxyHops);
      const connectionId = randomUUID();
      let credentials: Credentials;
      let principal: Principal;
      try {
        credentials = credentialsOf(ctx.connectionParams, request);
        principal = await authenticator.authenticate(credentials, connectionId);
      } catch (error) {
        const code = codeOf(error);
        log.info({ connectionId, clientIp, code }, 'websocket refused');
        if (code === 'SERVICE_UNAVAILABLE') return refuse(socket, CLOSE_TRY_AGAIN_LATER, 'Credentials cannot be checked right now; try again shortly.');
        return refuseByAddress(socket, clientIp, error instanceof Error ? error.message : 'Invalid credentials.');
      }
      if (principal.kind === 'anonymous') {
        log.info({ connectionId, clientIp, code: 'UNAUTHENTICATED' }, 'websocket refused');
        return refuseByAddress(socket, clientIp, 'Authentication required: send connectionParams { authorization: "Bearer <access token or API key>" }.');
      }
      const id = principalId(principal);
      const decision = limiter && (await limiter.consume(`${principal.kind}:${id}`, rateLimit.perMinute));
      if (decision && !decision.allowed) {
        log.info({ connectionId, clientIp, principal: id, code: 'RATE_LIMITED' }, 'websocket refused');
        return refuse(socket, CLOSE_TRY_AGAIN_LATER, `Too many requests; retry in ${decision.resetSeconds} s.`);
      }
      const connection: Connection = { id: connectionId, principal, principalId: id, credentials, clientIp, subscriptions: new Map(), subscribes: 0 };
      ctx.extra.connection = connection;
      // Its headers would stay in memory as long as the socket (kilobytes, times thousands of sockets).
      ctx.extra.request = undefined;
      log.debug({ connectionId, clientIp, principal: id }, 'websocket connected');
      return true;
    },

    async onSubscribe(ctx, id, payload) {
      const connection = ctx.extra.connection;
      // graphql-ws refuses subscribe messages before the acknowledgement itself (4401).
      if (!connection) return [appError('UNAUTHENTICATED', 'Authentication required.')];
      const started = Date.now();
      const refused = (errors: readonly GraphQLError[]) => {
        log.info({ subscriptionId: id.slice(0, 100), connectionId: connection.id, principal: connection.principalId, codes: errors.map(codeOf), durationMs: Date.now() - started }, 'subscription refused');
        return errors;
      };

      // ctx.subscriptions already holds this id (graphql-ws reserves it before asking us).
      let running = 0;
      for (const _ in ctx.subscriptions) running += 1;
      if (running > settings.maxPerSocket) {
        return refused([appError('RATE_LIMITED', `Too many subscriptions on this connection (at most ${settings.maxPerSocket}); complete some or open another connection.`)]);
      }
      if (limiter) {
        const decision = await limiter.consume(`${connection.principal.kind}:${connection.principalId}`, rateLimit.perMinute);
        if (decision && !decision.allowed) return refused([appError('RATE_LIMITED', `Too many requests; retry in ${decision.resetSeconds} s.`)]);
      }
      let principal: Principal;
      try {
        principal = await authenticator.authenticate(connection.credentials, id);
      } catch (error) {
        // Expired or revoked since the socket opened: this subscription is refused; the client reconnects with a fresh credential.
        return refused([error as GraphQLError]);
      }

      // Client-chosen ids can hold anything: the request id subgraphs log is the socket's id and a number.
      const requestId = `${connection.id}.${(connection.subscribes += 1)}`;
      const result = await executor.start(id, payload, { principal, requestId, clientIp: connection.clientIp });
      if (!('args' in result)) return refused(result);
      // Even if the socket closed meanwhile: graphql-ws then returns the stream at once and completes it.
      connection.subscriptions.set(id, result.subscription);
      openSubscriptions += 1;
      log.info(
        {
          subscriptionId: id.slice(0, 100),
          connectionId: connection.id,
          principal: connection.principalId,
          taskId: result.subscription.taskId,
          afterSequence: result.subscription.afterSequence,
          operationName: payload.operationName ?? null,
        },
        'subscription started',
      );
      return result.args;
    },

    onNext(ctx, id, _payload, _args, result) {
      const subscription = ctx.extra.connection?.subscriptions.get(id);
      if (subscription) subscription.eventsSent += 1;
      eventsDelivered += 1;
      if (!result.errors) return undefined;
      return { ...(result.data !== undefined ? { data: result.data } : {}), errors: result.errors.map(format) };
    },

    onError(ctx, id, _payload, errors) {
      const subscription = ctx.extra.connection?.subscriptions.get(id);
      if (subscription) subscription.errorCode = codeOf(errors[0]);
      return errors.map(format);
    },

    onComplete(ctx, id) {
      const connection = ctx.extra.connection;
      if (connection) ended(connection, id, ctx.extra.socket.readyState === ctx.extra.socket.OPEN);
    },

    onClose(ctx, code) {
      // graphql-ws has returned every stream of the socket by now; whatever did not reach
      // onComplete yet is ended here, so nothing it holds outlives the socket.
      const connection = ctx.extra.connection;
      if (!connection) return;
      connection.closeCode ??= code;
      for (const [id, subscription] of connection.subscriptions) {
        void subscription.results.return();
        ended(connection, id, false);
      }
    },
  });

  /**
   * The ws side of graphql-ws, as its `useServer` does it but: a failed write resolves (the socket
   * is going away and its close event ends its subscriptions) instead of surfacing as an internal
   * error; protocol violations (an oversized message, 1009) and handler failures go to the log,
   * not the console; one keep-alive timer for every socket rather than one each, pinging them in slices.
   */
  const alive = new WeakSet<WebSocket>();
  const onProtocolError = (error: Error & { code?: string }) => log.info({ reason: error.code ?? error.message }, 'websocket closed for a protocol error');
  // What each socket holds is kept small (10,000s of sockets): methods rather than named arrow
  // functions (tsx's keepNames gives each of those a `name` property of its own), one close listener.
  wss.on('connection', (socket, request) => {
    const extra: SocketExtra = { socket, request };
    alive.add(socket);
    socket.on('pong', () => alive.add(socket));
    // ws has already closed the socket with the right code when it reports one of these.
    socket.on('error', onProtocolError);
    const closed = server.opened(
      {
        protocol: socket.protocol,
        send(data) {
          return new Promise<void>((resolve) => {
            if (socket.readyState !== socket.OPEN) return resolve();
            socket.send(data, () => resolve());
          });
        },
        close(code, reason) {
          socket.close(code, reason && closeReason(reason));
        },
        onMessage(handle) {
          socket.on('message', (data) => {
            handle(String(data)).catch((error: unknown) => {
              log.error({ err: error, connectionId: extra.connection?.id }, 'websocket message handling failed');
              socket.close(CloseCode.InternalServerError, 'Internal server error');
            });
          });
        },
      },
      extra,
    );
    socket.on('close', (code, reason) => {
      if (extra.connection) extra.connection.closeCode = code;
      closed(code, String(reason)).catch((error: unknown) => log.error({ err: error }, 'websocket close handling failed'));
    });
  });
  // A socket that has not answered the previous ping by the next one is gone (no close frame came).
  // Each keep-alive period is walked in slices (up to 30, 100 ms apart at least): pinging 10,000
  // sockets, and reading their 10,000 pongs, at one instant would stall every subscription for
  // hundreds of milliseconds each period.
  // A round walks a copy of the socket list, dropped when the round ends: an iterator over
  // wss.clients kept between slices would pin every table the Set has outgrown since, and with them
  // every socket deleted from it (seen as closed WebSockets piling up in the heap).
  const slices = Math.min(HEARTBEAT_SLICES, Math.max(1, Math.floor(settings.keepAliveMs / 100)));
  let round: WebSocket[] | undefined;
  let next = 0;
  let perSlice = 0;
  const heartbeat =
    settings.keepAliveMs > 0
      ? setInterval(() => {
          if (!round) {
            round = [...wss.clients];
            next = 0;
            perSlice = Math.ceil(round.length / slices);
          }
          const end = Math.min(round.length, next + perSlice);
          for (; next < end; next++) {
            const socket = round[next];
            if (socket.readyState !== socket.OPEN) continue; // closed since the round began
            if (!alive.delete(socket)) socket.terminate();
            else socket.ping();
          }
          if (next >= round.length) round = undefined;
        }, settings.keepAliveMs / slices).unref()
      : undefined;

  let closing: Promise<void> | undefined;
  return {
    get sockets() {
      return wss.clients.size;
    },
    get subscriptions() {
      return openSubscriptions;
    },
    get eventsSent() {
      return eventsDelivered;
    },
    close(graceMs = 2000) {
      closing ??= (async () => {
        clearInterval(heartbeat);
        const allClosed = new Promise<void>((resolve) => wss.close(() => resolve()));
        for (const socket of wss.clients) socket.close(CLOSE_GOING_AWAY, 'Server shutting down; reconnect and resume with afterSequence.');
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<'late'>((resolve) => {
          timer = setTimeout(() => resolve('late'), graceMs);
        });
        if ((await Promise.race([allClosed, late])) === 'late') {
          for (const socket of wss.clients) socket.terminate();
          await allClosed;
        }
        clearTimeout(timer);
      })();
      return closing;
    },
  };
}
