import { once } from 'node:events';
import { createServer } from 'node:http';
import express, { type ErrorRequestHandler, type Request, type RequestHandler, type Response } from 'express';
import { ApolloGateway } from '@apollo/gateway';
import { ApolloServer } from '@apollo/server';
import { ApolloServerPluginDrainHttpServer } from '@apollo/server/plugin/drainHttpServer';
import { ApolloServerPluginLandingPageDisabled } from '@apollo/server/plugin/disabled';
import { ApolloServerPluginLandingPageLocalDefault } from '@apollo/server/plugin/landingPage/default';
import { expressMiddleware } from '@as-integrations/express5';
import { GraphQLError } from 'graphql';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { maskError, type ErrorCode } from '../lib/errors.js';
import { listen } from '../lib/http.js';
import { createLogger } from '../lib/logger.js';
import { PRINCIPAL_HEADER, type Principal } from '../lib/principal.js';
import type { RunningServer } from '../lib/subgraph-server.js';
import { createTaskEventLog } from '../lib/task-events/index.js';
import type { TaskEventLog } from '../lib/task-events/types.js';
import { Authenticator, principalId } from './authenticate.js';
import type { RouterConfig } from './config.js';
import type { RequestRecord, RouterContext } from './context.js';
import { cors } from './cors.js';
import { policyPlugin } from './policy-plugin.js';
import { MemoryRateLimitStore, RateLimiter, RedisRateLimitStore, rateLimitedError, rateLimitHeaders } from './rate-limit.js';
import { recordOf, requestLog } from './request-log.js';
import { INVALID_UTF8, MAX_BODY_DEPTH, nestsDeeperThan, verifyUtf8 } from './request-body.js';
import { createSubgraphFetcher } from './subgraph-fetcher.js';
import { SubgraphDataSource } from './subgraph-source.js';
import { SubscriptionExecutor, type GatewayQuery } from './subscription-executor.js';
import { startSubscriptionServer, type SubscriptionServer } from './subscriptions.js';

export interface RouterDeps {
  /** @default createLogger('router', config.logLevel) */
  log?: Logger;
  /** A Redis client the caller owns and closes. @default one made from `config.redisUrl`, closed with the router */
  redis?: Redis;
  /**
   * The task event log subscriptions stream from, owned and closed by the caller (`npm start` shares
   * one in-memory log with its in-process worker). @default one made from `config.redisUrl` (Redis)
   * or in memory, closed with the router
   */
  eventLog?: TaskEventLog;
  /**
   * The whole platform runs in this process (`npm start`'s embedded mode): its in-process rate
   * limits and event log are shared by everything there is, so a missing REDIS_URL is not warned about.
   * @default false
   */
  embedded?: boolean;
}

/**
 * The warning a router started on its own without REDIS_URL logs once at start, or undefined when
 * nothing it needs shared is kept in its own memory. Without Redis, rate-limit windows are counted
 * in this process only (each replica allows the whole rate), and the task event log is an
 * in-memory one that task workers in other processes never write to, so live `taskEvents`
 * subscriptions see none of their events. It still starts: tests and single-process setups run it so.
 */
export function missingRedisWarning(
  config: Pick<RouterConfig, 'redisUrl' | 'rateLimit'>,
  deps: Pick<RouterDeps, 'redis' | 'eventLog' | 'embedded'> = {},
): string | undefined {
  if (config.redisUrl || deps.embedded) return undefined;
  const consequences: string[] = [];
  if (config.rateLimit.enabled && !deps.redis) consequences.push('rate limits are counted in this router process only (each replica allows the full rate)');
  if (!deps.eventLog) consequences.push('taskEvents subscriptions cannot see the events that task workers in other processes write');
  if (consequences.length === 0) return undefined;
  return `REDIS_URL is unset: ${consequences.join(', and ')}. Set REDIS_URL to the Redis the task service and workers use; only \`npm start\` (everything in one process) does without.`;
}

/**
 * Identity headers a client might send hoping a subgraph trusts them. The gateway forwards no
 * client header anyway; dropping these at the door keeps that true for any code added later.
 */
const IDENTITY_HEADERS = [PRINCIPAL_HEADER, 'x-user-id', 'x-api-key-id', 'x-principal', 'x-scopes', 'x-forwarded-user', 'x-remote-user'];

function sendError(res: Response, status: number, code: ErrorCode, message: string): void {
  recordOf(res).errorCodes.push(code);
  res.status(status).type('application/json').send(JSON.stringify({ errors: [{ message, extensions: { code } }] }));
}

function codeOf(error: unknown): string {
  return error instanceof GraphQLError && typeof error.extensions.code === 'string' ? error.extensions.code : 'INTERNAL_SERVER_ERROR';
}

function header(req: Request, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value.join(', ') : value;
}

/** A Redis client that fails fast while Redis is away, so rate limits fail open instead of queueing requests. */
async function connectRedis(url: string, log: Logger): Promise<Redis> {
  const redis = new Redis(url, { enableOfflineQueue: false, maxRetriesPerRequest: 1, commandTimeout: 500, connectTimeout: 2000 });
  let lastWarning = 0;
  redis.on('error', (error: Error) => {
    if (Date.now() - lastWarning < 10_000) return;
    lastWarning = Date.now();
    log.warn({ err: error }, 'redis unavailable');
  });
  // Wait for the connection so the first requests are counted, but start anyway if Redis is away.
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    once(redis, 'ready'),
    once(redis, 'error'),
    new Promise((resolve) => {
      timer = setTimeout(resolve, 2000);
    }),
  ]).catch(() => undefined);
  clearTimeout(timer);
  return redis;
}

async function reachable(url: string): Promise<boolean> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(2000) });
    await response.body?.cancel();
    return response.ok;
  } catch {
    return false;
  }
}

async function pings(redis: Redis): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('redis ping timed out')), 2000);
    });
    return (await Promise.race([redis.ping(), timeout])) === 'PONG';
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Starts the router: the gateway over the composed supergraph, behind authentication, rate limits,
 * operation limits, CORS and CSRF prevention, with /healthz and /readyz. `url` is the base URL;
 * GraphQL is at `${url}/graphql`.
 */
export async function startRouter(config: RouterConfig, deps: RouterDeps = {}): Promise<RunningServer> {
  const log = deps.log ?? createLogger('router', config.logLevel);
  const ownsRedis = !deps.redis && config.redisUrl !== undefined;
  const redis = deps.redis ?? (config.redisUrl ? await connectRedis(config.redisUrl, log) : undefined);

  const ownsEventLog = !deps.eventLog;
  const eventLog =
    deps.eventLog ?? createTaskEventLog({ redisUrl: config.redisUrl, prefix: config.events.prefix, retentionSeconds: config.events.retentionSeconds, log });
  const warning = missingRedisWarning(config, deps);
  if (warning) log.warn(warning);

  const limiter = config.rateLimit.enabled
    ? new RateLimiter({ store: redis ? new RedisRateLimitStore(redis, config.rateLimit.prefix) : new MemoryRateLimitStore(), log })
    : undefined;
  const authenticator = new Authenticator({
    publicKey: config.jwt.publicKey,
    issuer: config.jwt.issuer,
    audience: config.jwt.audience,
    authServiceUrl: config.subgraphUrls.auth,
    internalSecret: config.internalSecret,
    apiKeyCacheMs: config.apiKeyCacheMs,
    log,
  });

  const subgraphFetcher = createSubgraphFetcher({ timeoutMs: config.subgraphTimeoutMs });
  /** name → base URL of every subgraph the supergraph routes to (what /readyz checks). */
  const routed = new Map<string, string>();
  const gateway = new ApolloGateway({
    supergraphSdl: config.supergraphSdl,
    logger: log.child({ component: 'gateway' }),
    buildService: ({ name, url }) => {
      const base = (config.subgraphUrls as Record<string, string | undefined>)[name] ?? url?.replace(/\/graphql\/?$/, '');
      if (!base) throw new Error(`The supergraph names subgraph "${name}" without a URL, and no ${name.toUpperCase()}_URL is set.`);
      routed.set(name, base);
      return new SubgraphDataSource(name, `${base}/graphql`, config.internalSecret, subgraphFetcher.fetcher, log, { shareInFlight: config.shareInFlightFetches });
    },
  });

  // Subscriptions are checked against the same API schema the gateway serves, whenever it changes.
  const subscriptionExecutor = new SubscriptionExecutor({
    eventLog,
    limits: config.limits,
    log,
    hideSchemaDetails: !config.introspectionEnabled,
    gateway: (request, caller) => runAsCaller(request, caller),
  });
  gateway.onSchemaLoadOrUpdate(({ apiSchema }) => subscriptionExecutor.setSchema(apiSchema));

  const app = express();
  app.disable('x-powered-by');
  // ETags would hash every GraphQL response body; clients never revalidate POSTs.
  app.set('etag', false);
  app.set('trust proxy', config.trustProxyHops);
  const httpServer = createServer(app);

  const apollo = new ApolloServer<RouterContext>({
    gateway,
    csrfPrevention: true,
    introspection: config.introspectionEnabled,
    // Without introspection, "did you mean" suggestions would leak the schema anyway.
    hideSchemaDetailsFromClientErrors: !config.introspectionEnabled,
    includeStacktraceInErrorResponses: false,
    allowBatchedHttpRequests: false,
    parseOptions: { maxTokens: config.limits.maxTokens },
    formatError: (formatted, error) => maskError(log, formatted, error),
    logger: log,
    // Shutdown is ours (close(), main.ts): Apollo's own handler would re-raise SIGTERM and kill the
    // process before Redis and the connection pools are closed.
    stopOnTerminationSignals: false,
    plugins: [
      ApolloServerPluginDrainHttpServer({ httpServer }),
      config.sandboxEnabled ? ApolloServerPluginLandingPageLocalDefault({ embed: true }) : ApolloServerPluginLandingPageDisabled(),
      policyPlugin({
        limits: config.limits,
        limitsEnabled: config.operationLimitsEnabled,
        allowAnonymous: config.allowAnonymous,
        credentialLimiter: limiter && { limiter, perMinute: config.rateLimit.authPerMinute },
      }),
    ],
  });
  const releaseResources = async () => {
    subscriptionExecutor.close();
    subgraphFetcher.close();
    await limiter?.close();
    if (ownsRedis && redis) await redis.quit().catch(() => redis.disconnect());
    if (ownsEventLog) await eventLog.close().catch((error: unknown) => log.warn({ err: error }, 'closing the task event log failed'));
  };

  /**
   * A query through the gateway's ordinary path as a subscriber: the same context an HTTP request
   * of theirs gets, a fresh one per call (its principal proof is short-lived, subscriptions are not).
   */
  const runAsCaller: GatewayQuery = async (request, caller) => {
    const record: RequestRecord = { requestId: caller.requestId, clientIp: caller.clientIp, principalId: principalId(caller.principal), errorCodes: [] };
    const response = await apollo.executeOperation(request, { contextValue: { principal: caller.principal, record } });
    if (response.body.kind !== 'single') throw new Error('The gateway answered a subscription fetch incrementally.');
    return response.body.singleResult as Awaited<ReturnType<GatewayQuery>>;
  };
  try {
    await apollo.start();
  } catch (error) {
    await releaseResources();
    throw error;
  }

  /** Credentials → principal, then the caller's rate limit; both refuse before any parsing or planning. */
  async function context({ req, res }: { req: Request; res: Response }): Promise<RouterContext> {
    const record = recordOf(res);
    const { operationName } = (req.body ?? {}) as { operationName?: unknown };
    if (typeof operationName === 'string') record.operationName = operationName.slice(0, 100);
    let principal: Principal;
    try {
      principal = await authenticator.authenticate({ authorization: header(req, 'authorization'), apiKey: header(req, 'x-api-key') }, record.requestId);
    } catch (error) {
      // Failed credentials count against the address, so guessing API keys costs the same as anonymous calls.
      if (limiter && codeOf(error) === 'UNAUTHENTICATED') {
        const decision = await limiter.consume(`ip:${record.clientIp}`, config.rateLimit.anonPerMinute);
        if (decision && !decision.allowed) error = rateLimitedError(decision);
      }
      record.errorCodes.push(codeOf(error));
      throw error;
    }
    record.principalId = principalId(principal);
    if (limiter) {
      const anonymous = principal.kind === 'anonymous';
      const decision = await limiter.consume(
        anonymous ? `ip:${record.clientIp}` : `${principal.kind}:${record.principalId}`,
        anonymous ? config.rateLimit.anonPerMinute : config.rateLimit.perMinute,
      );
      if (decision) {
        for (const [name, value] of rateLimitHeaders(decision)) res.setHeader(name, value);
        if (!decision.allowed) {
          record.errorCodes.push('RATE_LIMITED');
          throw rateLimitedError(decision);
        }
      }
    }
    return { principal, record };
  }

  const stripIdentityHeaders: RequestHandler = (req, _res, next) => {
    for (const name of IDENTITY_HEADERS) delete req.headers[name];
    next();
  };

  const refuseBatches: RequestHandler = (req, res, next) => {
    if (Array.isArray(req.body)) return sendError(res, 400, 'BAD_REQUEST', 'Batched requests are disabled; send one operation per request.');
    next();
  };

  const refuseDeepBodies: RequestHandler = (req, res, next) => {
    if (nestsDeeperThan(req.body, MAX_BODY_DEPTH)) return sendError(res, 400, 'BAD_REQUEST', `The request body nests deeper than ${MAX_BODY_DEPTH} levels.`);
    next();
  };

  const bodyErrors: ErrorRequestHandler = (error, _req, res, next) => {
    if (res.headersSent) return next(error);
    const { type, status } = error as { type?: string; status?: number };
    if (type === 'entity.too.large') return sendError(res, 413, 'PAYLOAD_TOO_LARGE', `The request body exceeds the limit of ${config.maxBodyBytes} bytes.`);
    if (type === 'entity.parse.failed') return sendError(res, 400, 'BAD_REQUEST', 'The request body is not valid JSON.');
    if (type === INVALID_UTF8) return sendError(res, 400, 'BAD_REQUEST', 'The request body is not valid UTF-8.');
    if (typeof status === 'number' && status >= 400 && status < 500) return sendError(res, 400, 'BAD_REQUEST', 'The request body cannot be read (check its encoding and Content-Type).');
    log.error({ err: error, requestId: recordOf(res)?.requestId }, 'unexpected error before GraphQL');
    sendError(res, 500, 'INTERNAL_SERVER_ERROR', 'Internal server error.');
  };

  // Probes come before the request log: orchestrators poll them every few seconds.
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok', service: 'router' });
  });
  app.get('/readyz', async (_req, res) => {
    const entries = await Promise.all([
      ...[...routed].map(async ([name, base]) => [name, await reachable(`${base}/healthz`)] as const),
      ...(redis ? [pings(redis).then((ok) => ['redis', ok] as const)] : []),
      eventLog.ping().then(
        (ok) => ['events', ok] as const,
        () => ['events', false] as const,
      ),
    ]);
    const checks = Object.fromEntries(entries);
    const ready = entries.every(([, ok]) => ok);
    res.status(ready ? 200 : 503).json({ status: ready ? 'ready' : 'unavailable', service: 'router', checks });
  });
  app.use(requestLog(log));
  app.use(
    '/graphql',
    cors(config.corsOrigins),
    stripIdentityHeaders,
    express.json({ limit: config.maxBodyBytes, verify: verifyUtf8 }),
    refuseBatches,
    refuseDeepBodies,
    expressMiddleware(apollo, { context }),
  );
  app.use((_req, res) => sendError(res, 404, 'NOT_FOUND', 'Not found: GraphQL is served at /graphql.'));
  app.use(bodyErrors);

  let port: number;
  try {
    port = await listen(httpServer, config.port, config.host);
  } catch (error) {
    await apollo.stop();
    await releaseResources();
    throw error;
  }
  const subscriptions: SubscriptionServer = startSubscriptionServer({
    httpServer,
    executor: subscriptionExecutor,
    authenticator,
    limiter,
    rateLimit: config.rateLimit,
    settings: config.subscriptions,
    trustProxyHops: config.trustProxyHops,
    log,
  });
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  log.info(
    {
      url: `${url}/graphql`,
      subscriptions: `${url.replace(/^http/, 'ws')}/graphql`,
      subgraphs: Object.fromEntries(routed),
      rateLimitStore: limiter ? (redis ? 'redis' : 'memory') : 'off',
      eventLog: deps.eventLog ? 'injected' : config.redisUrl ? 'redis' : 'memory',
    },
    'router ready',
  );

  return {
    url,
    port,
    close: async () => {
      // Subscription sockets first (1001: clients resume elsewhere with afterSequence): the HTTP
      // drain would otherwise cut them without a close frame. Then in-flight requests finish
      // (drain plugin), the gateway stops, and the stores close.
      await subscriptions.close();
      await apollo.stop();
      await releaseResources();
    },
  };
}
