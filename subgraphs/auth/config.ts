import { ConfigError, envInt, envPort, envString, readCommonConfig } from '../../lib/config.js';
import { readJwtPrivateKey, readJwtSettings } from '../../lib/jwt-keys.js';
import { DEFAULT_ACCESS_TOKEN_TTL_SECONDS, DEFAULT_REFRESH_TOKEN_TTL_SECONDS, type AuthSubgraphConfig } from './server.js';
import { rsaPrivateKey } from './sessions.js';

type Env = Record<string, string | undefined>;

/**
 * The auth subgraph's settings from the environment: AUTH_PORT, HOST, DATABASE_URL,
 * INTERNAL_SECRET, JWT_PRIVATE_KEY(_FILE), JWT_ISSUER, JWT_AUDIENCE, ACCESS_TOKEN_TTL_SECONDS,
 * REFRESH_TOKEN_TTL_SECONDS, LOG_LEVEL. Throws ConfigError with one sentence.
 */
export function authConfigFromEnv(env: Env): AuthSubgraphConfig {
  const common = readCommonConfig(env);
  if (!common.databaseUrl) throw new ConfigError('DATABASE_URL must be set to the PostgreSQL URL (postgres://user:pass@host:5432/db).');
  const jwtPrivateKey = readJwtPrivateKey(env);
  rsaPrivateKey(jwtPrivateKey); // refuses a key that would only fail at the first login
  return {
    port: envPort(env, 'AUTH_PORT', 8004),
    host: envString(env, 'HOST', '127.0.0.1'),
    databaseUrl: common.databaseUrl,
    internalSecret: common.internalSecret,
    metricsToken: common.metricsToken,
    jwtPrivateKey,
    jwt: readJwtSettings(env),
    // Short enough that a stolen access token soon dies; a day at most, since it cannot be revoked.
    accessTokenTtlSeconds: envInt(env, 'ACCESS_TOKEN_TTL_SECONDS', DEFAULT_ACCESS_TOKEN_TTL_SECONDS, { min: 30, max: 24 * 60 * 60 }),
    refreshTokenTtlSeconds: envInt(env, 'REFRESH_TOKEN_TTL_SECONDS', DEFAULT_REFRESH_TOKEN_TTL_SECONDS, { min: 60, max: 365 * 24 * 60 * 60 }),
    logLevel: common.logLevel,
  };
}
