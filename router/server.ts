import { once } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ApolloGateway } from '@apollo/gateway';
import { ApolloServer } from '@apollo/server';
import { ApolloServerPluginDrainHttpServer } from '@apollo/server/plugin/drainHttpServer';
import { ApolloServerPluginLandingPageDisabled } from '@apollo/server/plugin/disabled';
import { ApolloServerPluginLandingPageLocalDefault } from '@apollo/server/plugin/landingPage/default';
import { GraphQLError } from 'graphql';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { maskError, type ErrorCode } from '../lib/errors.js';
import { answerProbe, createRequestServer, executeGraphQL, headerValue, readJsonBody, RequestError, sendGraphQLError, splitUrl } from '../lib/graphql-http.js';
import { listen } from '../lib/http.js';
import { answerMetrics, outcomeLabel, ServiceMetrics } from '../lib/metrics.js';
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
import { startRequestRecord } from './request-log.js';
import { MAX_BODY_DEPTH, nestsDeeperThan, verifyUtf8 } from './request-body.js';
import { createSubgraphFetcher } from '../lib/http-client.js';
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

function sendError(res: ServerResponse, record: RequestRecord, status: number, code: ErrorCode, message: string): void {
  record.errorCodes.push(code);
  sendGraphQLError(res, status, code, message);
}

function codeOf(error: unknown): string {
  return error instanceof GraphQLError && typeof error.extensions.code === 'string' ? error.extensions.code : 'INTERNAL_SERVER_ERROR';
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

  // @apollo/gateway reports usage metrics to Apollo over the internet (hourly, with retries, from
  // every process) unless told not to. A self-hosted platform does not phone home on its users'
  // behalf: off unless the operator sets APOLLO_TELEMETRY_DISABLED=false themselves.
  process.env.APOLLO_TELEMETRY_DISABLED ??= 'true';
  const subgraphFetcher = createSubgraphFetcher({ timeoutMs: config.subgraphTimeoutMs });
  const metrics = new ServiceMetrics('router');
  const requestCount = metrics.counter('graphql_requests_total', 'GraphQL requests over HTTP, by operation type and outcome (ok or the first error code).', ['operation_type', 'outcome']);
  const requestSeconds = metrics.histogram('graphql_request_duration_seconds', 'Time from an HTTP GraphQL request to the end of its answer.', ['operation_type']);
  const fetchSeconds = metrics.histogram('subgraph_fetch_duration_seconds', 'Fetches from the router to each subgraph, by outcome (ok or error).', ['subgraph', 'outcome']);
  const observeFetch = (subgraph: string, seconds: number, ok: boolean) => fetchSeconds.observe({ subgraph, outcome: ok ? 'ok' : 'error' }, seconds);
  const observeRequest = (record: RequestRecord, status: number, seconds: number) => {
    const type = record.operationType ?? 'none';
    requestCount.inc({ operation_type: type, outcome: outcomeLabel(record.errorCodes, status) });
    requestSeconds.observe({ operation_type: type }, seconds);
  };
  /** name → base URL of every subgraph the supergraph routes to (what /readyz checks). */
  const routed = new Map<string, string>();
  const gateway = new ApolloGateway({
    supergraphSdl: config.supergraphSdl,
    logger: log.child({ component: 'gateway' }),
    buildService: ({ name, url }) => {
      const base = (config.subgraphUrls as Record<string, string | undefined>)[name] ?? url?.replace(/\/graphql\/?$/, '');
      if (!base) throw new Error(`The supergraph names subgraph "${name}" without a URL, and no ${name.toUpperCase()}_URL is set.`);
      routed.set(name, base);
      return new SubgraphDataSource(name, `${base}/graphql`, config.internalSecret, subgraphFetcher.fetcher, log, { shareInFlight: config.shareInFlightFetches, observe: observeFetch });
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

  const httpServer = createRequestServer(log, (req, res) => handle(req, res));

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
  async function context(req: IncomingMessage, res: ServerResponse, record: RequestRecord): Promise<RouterContext> {
    let principal: Principal;
    try {
      principal = await authenticator.authenticate({ authorization: headerValue(req, 'authorization'), apiKey: headerValue(req, 'x-api-key') }, record.requestId);
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

  const corsHeaders = cors(config.corsOrigins);

  async function readiness(): Promise<Record<string, boolean>> {
    const entries = await Promise.all([
      ...[...routed].map(async ([name, base]) => [name, await reachable(`${base}/healthz`)] as const),
      ...(redis ? [pings(redis).then((ok) => ['redis', ok] as const)] : []),
      eventLog.ping().then(
        (ok) => ['events', ok] as const,
        () => ['events', false] as const,
      ),
    ]);
    return Object.fromEntries(entries);
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const { path, search } = splitUrl(req.url);
    // Probes come before the request log: orchestrators poll them every few seconds.
    if (await answerProbe(req, res, path, 'router', readiness)) return;
    if (await answerMetrics(req, res, path, metrics, config.metricsToken)) return;
    const record = startRequestRecord(req, res, path, log, config.trustProxyHops, observeRequest);
    if (path !== '/graphql' && path !== '/graphql/') return sendError(res, record, 404, 'NOT_FOUND', 'Not found: GraphQL is served at /graphql.');
    if (corsHeaders(req, res)) return;
    // The gateway forwards no client header anyway; dropping these at the door keeps that true for any code added later.
    for (const name of IDENTITY_HEADERS) delete req.headers[name];

    let body: unknown;
    try {
      body =
        req.method === 'POST'
          ? await readJsonBody(req, { limitBytes: config.maxBodyBytes, verify: verifyUtf8, tooLargeMessage: `The request body exceeds the limit of ${config.maxBodyBytes} bytes.` })
          : undefined;
    } catch (error) {
      if (error instanceof RequestError) return sendError(res, record, error.status, error.code, error.message);
      throw error;
    }
    if (Array.isArray(body)) return sendError(res, record, 400, 'BAD_REQUEST', 'Batched requests are disabled; send one operation per request.');
    if (nestsDeeperThan(body, MAX_BODY_DEPTH)) return sendError(res, record, 400, 'BAD_REQUEST', `The request body nests deeper than ${MAX_BODY_DEPTH} levels.`);
    const { operationName } = (body ?? {}) as { operationName?: unknown };
    if (typeof operationName === 'string') record.operationName = operationName.slice(0, 100);
    await executeGraphQL(apollo, req, res, body, search, () => context(req, res, record));
  }

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
  metrics.observedGauge('graphql_ws_sockets', 'Open graphql-ws sockets.', () => subscriptions.sockets);
  metrics.observedGauge('graphql_ws_subscriptions', 'taskEvents subscriptions running.', () => subscriptions.subscriptions);
  metrics.observedCounter('graphql_ws_events_sent_total', 'Task events sent to subscribers.', () => subscriptions.eventsSent);
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
    metrics,
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
