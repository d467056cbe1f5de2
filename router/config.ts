import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  ConfigError,
  SUBGRAPH_NAMES,
  envBool,
  envEnum,
  envInt,
  envList,
  envMetricsToken,
  envPort,
  envSecret,
  envString,
  envUrl,
  subgraphBaseUrl,
  type SubgraphName,
} from '../lib/config.js';
import { readJwtPublicKey, readJwtSettings } from '../lib/jwt-keys.js';
import type { OperationLimits } from './operation-limits.js';

type Env = Record<string, string | undefined>;

/** Everything the router reads from the environment, validated once at start. */
export interface RouterConfig {
  /** `PORT`; 0 picks a free port. @default 8000 */
  port: number;
  /** `HOST`: the router is the public door, so it listens on every interface. @default '0.0.0.0' */
  host: string;
  /**
   * `ROUTER_PROCESSES`: router processes on this port (node:cluster workers, one per core is the
   * usual choice); above 1 needs REDIS_URL, which they share rate limits and task events through.
   * @default 1
   */
  processes: number;
  /** `INTERNAL_SECRET`: signs the principal proof the subgraphs check (≥ 32 characters, required). */
  internalSecret: string;
  /**
   * `REDIS_URL`: shared rate-limit windows and the task event log for every replica and worker;
   * unset keeps both in this process.
   */
  redisUrl: string | undefined;
  events: {
    /** `EVENTS_PREFIX`: key prefix of the task event log in Redis; workers must use the same. @default 'ap:' */
    prefix: string;
    /** `EVENT_RETENTION_SECONDS`: how long the live log keeps a task's events. @default 86400 */
    retentionSeconds: number;
  };
  /** graphql-ws subscriptions at ws://host:PORT/graphql. */
  subscriptions: {
    /** `WS_MAX_MESSAGE_BYTES`: a larger client message closes the socket (1009). @default 65536 */
    maxMessageBytes: number;
    /**
     * `WS_MAX_SUBSCRIPTIONS_PER_SOCKET`: running subscriptions per socket; one more is refused with
     * an error for its id, the others go on. @default 100
     */
    maxPerSocket: number;
    /** `WS_CONNECTION_INIT_TIMEOUT_MS`: a socket without connection_init by then is closed (4408). @default 3000 */
    connectionInitTimeoutMs: number;
    /** `WS_KEEP_ALIVE_MS`: ws-level ping interval; a socket that misses a pong for as long is dropped; 0 disables. @default 30000 */
    keepAliveMs: number;
  };
  /** Composed supergraph SDL, read from `SUPERGRAPH_PATH`. @default schema/supergraph.graphql */
  supergraphSdl: string;
  /** Base URL (no `/graphql`) of each subgraph, from `<NAME>_URL` or 127.0.0.1:8001..8004. */
  subgraphUrls: Record<SubgraphName, string>;
  /** `SUBGRAPH_TIMEOUT_MS`: a subgraph fetch slower than this fails with SERVICE_UNAVAILABLE. @default 30000 */
  subgraphTimeoutMs: number;
  /**
   * `SHARE_INFLIGHT_FETCHES`: identical query fetches to a subgraph for the same caller (principal
   * and scopes) that are in flight at the same time go out once and share the answer. Turn off only
   * for subgraphs whose queries have side effects. @default true
   */
  shareInFlightFetches: boolean;
  jwt: {
    /** PEM of the RSA key that verifies access tokens (`JWT_PUBLIC_KEY[_FILE]`, or derived from the private key). */
    publicKey: string;
    /** `JWT_ISSUER`. @default 'agent-platform' */
    issuer: string;
    /** `JWT_AUDIENCE`. @default 'agent-platform-api' */
    audience: string;
  };
  /**
   * `API_KEY_CACHE_MS`: how long an API key lookup (valid or not) is reused. Capped at 1000 so that a
   * revoked key stops working within two seconds. @default 1000
   */
  apiKeyCacheMs: number;
  /**
   * `ALLOW_ANONYMOUS`: anonymous callers may run every HTTP operation, not only signing in and
   * introspection. For public read-only supergraphs and benchmarks; subgraphs still get a signed
   * (anonymous) principal, anonymous callers still count against `RATE_LIMIT_ANON_PER_MINUTE`
   * unless rate limiting is off, and subscriptions still need credentials. @default false
   */
  allowAnonymous: boolean;
  rateLimit: {
    /** `RATE_LIMIT_ENABLED`: false counts nothing and sends no RateLimit headers. @default true */
    enabled: boolean;
    /** `RATE_LIMIT_PER_MINUTE`: per user or API key. @default 600 */
    perMinute: number;
    /** `RATE_LIMIT_ANON_PER_MINUTE`: per IP for anonymous callers. @default 60 */
    anonPerMinute: number;
    /** `RATE_LIMIT_AUTH_PER_MINUTE`: login, signUp and refreshToken per IP, against password guessing. @default 10 */
    authPerMinute: number;
    /** `RATE_LIMIT_PREFIX`: Redis key prefix. @default 'agent-platform:rate-limit:' */
    prefix: string;
  };
  /** Limits checked on every operation before it is planned. */
  limits: OperationLimits;
  /**
   * `OPERATION_LIMITS_ENABLED`: false skips the depth, alias, root-field, directive and cost checks
   * of HTTP operations (benchmarks, trusted callers). The parser's token limit (`MAX_TOKENS`) and the
   * checks of subscriptions stay. @default true
   */
  operationLimitsEnabled: boolean;
  /** `MAX_BODY_BYTES`: larger request bodies get 413 PAYLOAD_TOO_LARGE. @default 1048576 */
  maxBodyBytes: number;
  /** `CORS_ORIGINS`: browser origins allowed to call the router with credentials (`*` allows any, without). */
  corsOrigins: string[];
  /** `SANDBOX_ENABLED`: Apollo Sandbox at GET /graphql in a browser. @default true */
  sandboxEnabled: boolean;
  /** `INTROSPECTION_ENABLED`. @default true */
  introspectionEnabled: boolean;
  /** `METRICS_TOKEN`: when set, `/metrics` answers only `Authorization: Bearer <token>`. */
  metricsToken: string | undefined;
  /**
   * `TRUST_PROXY`: how many proxies in front of the router may set X-Forwarded-For; the client IP
   * (per-IP rate limits) is read through that many hops. 0 uses the socket address. @default 0
   */
  trustProxyHops: number;
  /** `LOG_LEVEL`. @default 'info' */
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
}

export const DEFAULT_CORS_ORIGINS = ['http://localhost:3000', 'http://localhost:5173', 'https://studio.apollographql.com'];
export const DEFAULT_SUPERGRAPH_PATH = fileURLToPath(new URL('../schema/supergraph.graphql', import.meta.url));

function readSupergraph(env: Env): string {
  const path = envString(env, 'SUPERGRAPH_PATH', DEFAULT_SUPERGRAPH_PATH);
  try {
    return readFileSync(path, 'utf8');
  } catch {
    throw new ConfigError(`SUPERGRAPH_PATH must name the composed supergraph SDL, but "${path}" cannot be read; compose the subgraphs first.`);
  }
}

function readOrigins(env: Env): string[] {
  const origins = envList(env, 'CORS_ORIGINS', DEFAULT_CORS_ORIGINS);
  for (const origin of origins) {
    if (origin === '*') continue;
    let parsed: URL | undefined;
    try {
      parsed = new URL(origin);
    } catch {
      parsed = undefined;
    }
    // An origin is scheme://host[:port] with nothing after it; anything else never matches a browser's Origin header.
    if (!parsed || parsed.origin !== origin) {
      throw new ConfigError(`CORS_ORIGINS must be a comma-separated list of origins like https://app.example.com, got "${origin}".`);
    }
  }
  return origins;
}

/**
 * Reads and validates the router's environment. `overrides.supergraphSdl` skips reading the file
 * (tests and the in-process launcher compose their own).
 */
export function routerConfigFromEnv(env: Env = process.env, overrides: { supergraphSdl?: string } = {}): RouterConfig {
  const jwt = readJwtSettings(env);
  const positive = { min: 1 };
  const processes = envInt(env, 'ROUTER_PROCESSES', 1, { min: 1, max: 256 });
  const redisUrl = envUrl(env, 'REDIS_URL', ['redis:', 'rediss:']);
  if (processes > 1 && !redisUrl) {
    throw new ConfigError('ROUTER_PROCESSES above 1 needs REDIS_URL: the processes share rate limits and task events through Redis.');
  }
  return {
    port: envPort(env, 'PORT', 8000),
    host: envString(env, 'HOST', '0.0.0.0'),
    processes,
    internalSecret: envSecret(env, 'INTERNAL_SECRET'),
    redisUrl,
    events: {
      prefix: envString(env, 'EVENTS_PREFIX', 'ap:'),
      retentionSeconds: envInt(env, 'EVENT_RETENTION_SECONDS', 86_400, { min: 60, max: 30 * 86_400 }),
    },
    subscriptions: {
      maxMessageBytes: envInt(env, 'WS_MAX_MESSAGE_BYTES', 64 * 1024, { min: 1024, max: 16 * 1024 * 1024 }),
      maxPerSocket: envInt(env, 'WS_MAX_SUBSCRIPTIONS_PER_SOCKET', 100, { min: 1, max: 10_000 }),
      connectionInitTimeoutMs: envInt(env, 'WS_CONNECTION_INIT_TIMEOUT_MS', 3000, { min: 100, max: 60_000 }),
      keepAliveMs: envInt(env, 'WS_KEEP_ALIVE_MS', 30_000, { min: 0, max: 600_000 }),
    },
    supergraphSdl: overrides.supergraphSdl ?? readSupergraph(env),
    subgraphUrls: Object.fromEntries(SUBGRAPH_NAMES.map((name) => [name, subgraphBaseUrl(env, name)])) as Record<SubgraphName, string>,
    subgraphTimeoutMs: envInt(env, 'SUBGRAPH_TIMEOUT_MS', 30_000, { min: 100, max: 600_000 }),
    shareInFlightFetches: envBool(env, 'SHARE_INFLIGHT_FETCHES', true),
    jwt: { publicKey: readJwtPublicKey(env), issuer: jwt.issuer, audience: jwt.audience },
    apiKeyCacheMs: envInt(env, 'API_KEY_CACHE_MS', 1000, { min: 0, max: 1000 }),
    allowAnonymous: envBool(env, 'ALLOW_ANONYMOUS', false),
    rateLimit: {
      enabled: envBool(env, 'RATE_LIMIT_ENABLED', true),
      perMinute: envInt(env, 'RATE_LIMIT_PER_MINUTE', 600, positive),
      anonPerMinute: envInt(env, 'RATE_LIMIT_ANON_PER_MINUTE', 60, positive),
      authPerMinute: envInt(env, 'RATE_LIMIT_AUTH_PER_MINUTE', 10, positive),
      prefix: envString(env, 'RATE_LIMIT_PREFIX', 'agent-platform:rate-limit:'),
    },
    limits: {
      maxDepth: envInt(env, 'MAX_QUERY_DEPTH', 12, positive),
      maxAliases: envInt(env, 'MAX_ALIASES', 30, { min: 0 }),
      maxRootFields: envInt(env, 'MAX_ROOT_FIELDS', 20, positive),
      maxTokens: envInt(env, 'MAX_TOKENS', 2000, { min: 10 }),
      maxCost: envInt(env, 'MAX_COST', 20_000, positive),
      maxDirectives: envInt(env, 'MAX_DIRECTIVES', 50, { min: 0 }),
      defaultListSize: envInt(env, 'DEFAULT_LIST_SIZE', 20, positive),
    },
    operationLimitsEnabled: envBool(env, 'OPERATION_LIMITS_ENABLED', true),
    maxBodyBytes: envInt(env, 'MAX_BODY_BYTES', 1024 * 1024, { min: 1024, max: 100 * 1024 * 1024 }),
    corsOrigins: readOrigins(env),
    sandboxEnabled: envBool(env, 'SANDBOX_ENABLED', true),
    introspectionEnabled: envBool(env, 'INTROSPECTION_ENABLED', true),
    metricsToken: envMetricsToken(env),
    trustProxyHops: envInt(env, 'TRUST_PROXY', 0, { min: 0, max: 10 }),
    logLevel: envEnum(env, 'LOG_LEVEL', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const, 'info'),
  };
}
