import { envPort, envString, readCommonConfig, ConfigError } from '../../lib/config.js';
import { exitOnSignals } from '../../lib/http.js';
import { createLogger } from '../../lib/logger.js';
import { startAgentSubgraph } from './server.js';

const log = createLogger('agent');
try {
  const common = readCommonConfig();
  if (!common.databaseUrl) throw new ConfigError('DATABASE_URL must be set to the PostgreSQL URL (postgres://user:pass@host:5432/db).');
  const server = await startAgentSubgraph({
    port: envPort(process.env, 'AGENT_PORT', 8001),
    host: envString(process.env, 'HOST', '127.0.0.1'),
    databaseUrl: common.databaseUrl,
    internalSecret: common.internalSecret,
    logLevel: common.logLevel,
  });
  exitOnSignals(log, server.close);
} catch (error) {
  if (error instanceof ConfigError) {
    log.fatal(error.message);
    process.exit(2);
  }
  throw error;
}
