import { readFileSync } from 'node:fs';
import DataLoader from 'dataloader';
import { parse } from 'graphql';
import type { MikroORM } from '@mikro-orm/postgresql';
import { ConfigError } from '../../lib/config.js';
import { databaseReachable, openServiceDatabase } from '../../lib/db.js';
import { createLogger } from '../../lib/logger.js';
import { ownerOf } from '../../lib/principal.js';
import { startSubgraphServer, type RunningServer } from '../../lib/subgraph-server.js';
import type { Context } from './context.js';
import { entities } from './entities.js';
import { internalRoutes } from './internal-routes.js';
import { migrations } from './migrations.js';
import { resolvers } from './resolvers/index.js';
import { pruneExpiredRefreshTokens, rsaPrivateKey, type SessionSettings } from './sessions.js';
import { usersByIds } from './users.js';

export interface AuthSubgraphConfig {
  /** 0 picks a free port. */
  port: number;
  /** @default '127.0.0.1' */
  host?: string;
  databaseUrl: string;
  /** Shared with the router; verifies its per-request principal proof. */
  internalSecret: string;
  /** `/metrics` answers only this bearer token when set. */
  metricsToken?: string;
  /** RSA private key in PEM form that signs access tokens. */
  jwtPrivateKey: string;
  /** `iss` and `aud` of access tokens; the router checks the same values. */
  jwt: { issuer: string; audience: string };
  /** Lifetime of access tokens. @default 900 */
  accessTokenTtlSeconds?: number;
  /** Lifetime of each refresh token. @default 2592000 (30 days) */
  refreshTokenTtlSeconds?: number;
  logLevel?: string;
}

export const DEFAULT_ACCESS_TOKEN_TTL_SECONDS = 900;
export const DEFAULT_REFRESH_TOKEN_TTL_SECONDS = 30 * 24 * 60 * 60;
const PRUNE_INTERVAL_MS = 60 * 60 * 1000;

const typeDefs = parse(readFileSync(new URL('./schema.graphql', import.meta.url), 'utf8'));

function positiveTtl(value: number | undefined, fallback: number, name: string): number {
  const ttl = value ?? fallback;
  if (!Number.isInteger(ttl) || ttl < 1) throw new ConfigError(`${name} must be a positive whole number of seconds, got ${ttl}.`);
  return ttl;
}

/** The auth subgraph: users, logins (access and refresh tokens) and API keys, in the `auth` schema. */
export async function startAuthSubgraph(config: AuthSubgraphConfig): Promise<RunningServer & { orm: MikroORM }> {
  const log = createLogger('auth', config.logLevel);
  const sessions: SessionSettings = {
    privateKey: rsaPrivateKey(config.jwtPrivateKey),
    issuer: config.jwt.issuer,
    audience: config.jwt.audience,
    accessTokenTtlSeconds: positiveTtl(config.accessTokenTtlSeconds, DEFAULT_ACCESS_TOKEN_TTL_SECONDS, 'ACCESS_TOKEN_TTL_SECONDS'),
    refreshTokenTtlSeconds: positiveTtl(config.refreshTokenTtlSeconds, DEFAULT_REFRESH_TOKEN_TTL_SECONDS, 'REFRESH_TOKEN_TTL_SECONDS'),
  };
  const orm = await openServiceDatabase({ databaseUrl: config.databaseUrl, schema: 'auth', entities, migrations });

  // Expired logins are dead weight; any replica may prune them, the deletes do not conflict.
  const prune = () =>
    pruneExpiredRefreshTokens(orm.em.fork()).then(
      (count) => count > 0 && log.info({ count }, 'pruned expired refresh tokens'),
      (error: unknown) => log.warn({ err: error }, 'pruning refresh tokens failed'),
    );
  const pruneTimer = setInterval(prune, PRUNE_INTERVAL_MS);
  pruneTimer.unref();

  let server: RunningServer;
  try {
    server = await startSubgraphServer<Context>({
      name: 'auth',
      port: config.port,
      host: config.host,
      typeDefs,
      resolvers,
      internalSecret: config.internalSecret,
      metricsToken: config.metricsToken,
      log,
      createContext: (base) => {
        const em = orm.em.fork();
        const callerId = ownerOf(base.principal);
        return { ...base, em, sessions, userById: new DataLoader((ids: readonly string[]) => usersByIds(em, callerId, ids)) };
      },
      readiness: async () => ({ database: await databaseReachable(orm) }),
      routes: internalRoutes({ orm, internalSecret: config.internalSecret, log }),
      onClose: async () => {
        clearInterval(pruneTimer);
        await orm.close();
      },
    });
  } catch (error) {
    clearInterval(pruneTimer);
    await orm.close();
    throw error;
  }
  return { ...server, orm };
}
