import { ConfigError, envPort, envString, readCommonConfig, subgraphBaseUrl } from '../../lib/config.js';
import type { TaskSubgraphConfig } from './server.js';
import { providerConfigFromEnv } from './providers/registry.js';

type Env = Record<string, string | undefined>;

/** The task subgraph's settings from the environment; throws ConfigError with one sentence. */
export function taskConfigFromEnv(env: Env): TaskSubgraphConfig {
  const common = readCommonConfig(env);
  if (!common.databaseUrl) throw new ConfigError('DATABASE_URL must be set to the PostgreSQL URL (postgres://user:pass@host:5432/db).');
  return {
    port: envPort(env, 'TASK_PORT', 8002),
    host: envString(env, 'HOST', '127.0.0.1'),
    databaseUrl: common.databaseUrl,
    internalSecret: common.internalSecret,
    metricsToken: common.metricsToken,
    agentUrl: subgraphBaseUrl(env, 'agent'),
    memoryUrl: subgraphBaseUrl(env, 'memory'),
    amqpUrl: common.amqpUrl,
    redisUrl: common.redisUrl,
    eventsPrefix: common.eventsPrefix,
    eventRetentionSeconds: common.eventRetentionSeconds,
    providers: providerConfigFromEnv(env),
    logLevel: common.logLevel,
  };
}
