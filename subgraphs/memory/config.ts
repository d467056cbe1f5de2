import { ConfigError, envPort, envString, readCommonConfig, subgraphBaseUrl } from '../../lib/config.js';
import type { MemorySubgraphConfig } from './server.js';

type Env = Record<string, string | undefined>;

/** The memory subgraph's settings from the environment; throws ConfigError with one sentence. */
export function memoryConfigFromEnv(env: Env): MemorySubgraphConfig {
  const common = readCommonConfig(env);
  if (!common.databaseUrl) throw new ConfigError('DATABASE_URL must be set to the PostgreSQL URL (postgres://user:pass@host:5432/db).');
  return {
    port: envPort(env, 'MEMORY_PORT', 8003),
    host: envString(env, 'HOST', '127.0.0.1'),
    databaseUrl: common.databaseUrl,
    internalSecret: common.internalSecret,
    metricsToken: common.metricsToken,
    // AGENT_URL, or 127.0.0.1 and AGENT_PORT (8001).
    agentUrl: subgraphBaseUrl(env, 'agent'),
    amqpUrl: common.amqpUrl,
    logLevel: common.logLevel,
  };
}
