/**
 * Typed reading of the environment. Every reader throws a ConfigError whose message is one sentence
 * naming the variable and what is expected, so a bad value stops a process at start, not later.
 */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

type Env = Record<string, string | undefined>;

function raw(env: Env, name: string): string | undefined {
  const value = env[name];
  return value === undefined || value.trim() === '' ? undefined : value.trim();
}

export function envString(env: Env, name: string, fallback: string): string;
export function envString(env: Env, name: string): string | undefined;
export function envString(env: Env, name: string, fallback?: string): string | undefined {
  return raw(env, name) ?? fallback;
}

export function envInt(env: Env, name: string, fallback: number, range: { min?: number; max?: number } = {}): number {
  const value = raw(env, name);
  if (value === undefined) return fallback;
  const min = range.min ?? Number.MIN_SAFE_INTEGER;
  const max = range.max ?? Number.MAX_SAFE_INTEGER;
  if (!/^-?\d+$/.test(value) || Number(value) < min || Number(value) > max) {
    throw new ConfigError(`${name} must be an integer between ${min} and ${max}, got "${value}".`);
  }
  return Number(value);
}

export function envPort(env: Env, name: string, fallback: number): number {
  return envInt(env, name, fallback, { min: 0, max: 65535 });
}

export function envBool(env: Env, name: string, fallback: boolean): boolean {
  const value = raw(env, name)?.toLowerCase();
  if (value === undefined) return fallback;
  if (['1', 'true', 'yes', 'on'].includes(value)) return true;
  if (['0', 'false', 'no', 'off'].includes(value)) return false;
  throw new ConfigError(`${name} must be true or false, got "${value}".`);
}

export function envUrl(env: Env, name: string, protocols: string[]): string | undefined;
export function envUrl(env: Env, name: string, protocols: string[], fallback: string): string;
export function envUrl(env: Env, name: string, protocols: string[], fallback?: string): string | undefined {
  const value = raw(env, name);
  if (value === undefined) return fallback;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError(`${name} must be a URL (${protocols.map((p) => `${p}//…`).join(' or ')}), got something that does not parse.`);
  }
  if (!protocols.includes(url.protocol)) {
    throw new ConfigError(`${name} must use ${protocols.join(' or ')}, got "${url.protocol}".`);
  }
  return value;
}

export function envEnum<T extends string>(env: Env, name: string, allowed: readonly T[], fallback: T): T {
  const value = raw(env, name);
  if (value === undefined) return fallback;
  if (!(allowed as readonly string[]).includes(value)) {
    throw new ConfigError(`${name} must be one of ${allowed.join(', ')}, got "${value}".`);
  }
  return value as T;
}

export function envList(env: Env, name: string, fallback: string[]): string[] {
  const value = raw(env, name);
  if (value === undefined) return fallback;
  return value.split(',').map((s) => s.trim()).filter(Boolean);
}

/** A secret shared by the router and the subgraphs, used to sign the per-request principal proof. */
export function envSecret(env: Env, name: string, fallback?: string): string {
  const value = raw(env, name) ?? fallback;
  if (value === undefined) {
    throw new ConfigError(`${name} must be set to a random string of at least 32 characters shared by the router and every subgraph.`);
  }
  if (value.length < 32) throw new ConfigError(`${name} must be at least 32 characters long.`);
  return value;
}

/** Settings every service reads the same way. */
export interface CommonConfig {
  /** PostgreSQL URL; required by services that own tables (the launcher fills it in embedded mode). */
  databaseUrl: string | undefined;
  /** Redis URL; unset means in-memory stores (one process only). */
  redisUrl: string | undefined;
  /** RabbitMQ URL; unset means an in-process queue (one process only). */
  amqpUrl: string | undefined;
  /** Secret for the router → subgraph principal proof (`INTERNAL_SECRET`). */
  internalSecret: string;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** Key prefix of the task event log in Redis, the same for the router, task service and workers. */
  eventsPrefix: string;
  /** How long the live event log keeps a task's events. */
  eventRetentionSeconds: number;
  /** `METRICS_TOKEN`: when set, `/metrics` answers only `Authorization: Bearer <token>`. */
  metricsToken: string | undefined;
}

/** `METRICS_TOKEN`, unset or at least 16 characters. */
export function envMetricsToken(env: Env): string | undefined {
  const token = raw(env, 'METRICS_TOKEN');
  if (token !== undefined && token.length < 16) throw new ConfigError('METRICS_TOKEN must be at least 16 characters long, or unset to serve /metrics without a token.');
  return token;
}

export function readCommonConfig(env: Env = process.env): CommonConfig {
  return {
    databaseUrl: envUrl(env, 'DATABASE_URL', ['postgres:', 'postgresql:']),
    redisUrl: envUrl(env, 'REDIS_URL', ['redis:', 'rediss:']),
    amqpUrl: envUrl(env, 'AMQP_URL', ['amqp:', 'amqps:']),
    internalSecret: envSecret(env, 'INTERNAL_SECRET'),
    logLevel: envEnum(env, 'LOG_LEVEL', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const, 'info'),
    eventsPrefix: envString(env, 'EVENTS_PREFIX', 'ap:'),
    eventRetentionSeconds: envInt(env, 'EVENT_RETENTION_SECONDS', 86_400, { min: 60, max: 30 * 86_400 }),
    metricsToken: envMetricsToken(env),
  };
}

/** Where each subgraph listens by default and the variable that overrides its URL at the router. */
export const SUBGRAPHS = {
  agent: { port: 8001, urlVar: 'AGENT_URL', portVar: 'AGENT_PORT' },
  task: { port: 8002, urlVar: 'TASK_URL', portVar: 'TASK_PORT' },
  memory: { port: 8003, urlVar: 'MEMORY_URL', portVar: 'MEMORY_PORT' },
  auth: { port: 8004, urlVar: 'AUTH_URL', portVar: 'AUTH_PORT' },
} as const;
export type SubgraphName = keyof typeof SUBGRAPHS;
export const SUBGRAPH_NAMES = Object.keys(SUBGRAPHS) as SubgraphName[];

/** The base URL (no path) of a subgraph, from `<NAME>_URL` or localhost and its port. */
export function subgraphBaseUrl(env: Env, name: SubgraphName): string {
  const spec = SUBGRAPHS[name];
  const url = envUrl(env, spec.urlVar, ['http:', 'https:']);
  if (url) return url.replace(/\/+$/, '').replace(/\/graphql$/, '');
  return `http://127.0.0.1:${envPort(env, spec.portVar, spec.port)}`;
}
