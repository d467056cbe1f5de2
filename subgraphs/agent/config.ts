import { ConfigError, envPort, envString, readCommonConfig } from '../../lib/config.js';
import type { AgentSubgraphConfig } from './server.js';

type Env = Record<string, string | undefined>;

/** The agent subgraph's settings from the environment; throws ConfigError with one sentence. */
export function agentConfigFromEnv(env: Env): AgentSubgraphConfig {
  const common = readCommonConfig(env);
  if (!common.databaseUrl) throw new ConfigError('DATABASE_URL must be set to the PostgreSQL URL (postgres://user:pass@host:5432/db).');
  return {
    port: envPort(env, 'AGENT_PORT', 8001),
    host: envString(env, 'HOST', '127.0.0.1'),
    databaseUrl: common.databaseUrl,
    internalSecret: common.internalSecret,
    metricsToken: common.metricsToken,
    logLevel: common.logLevel,
  };
}
