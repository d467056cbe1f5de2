import type { IncomingMessage, ServerResponse } from 'node:http';
import type { MikroORM } from '@mikro-orm/postgresql';
import { headerValue, readJsonBody, RequestError, sendJson } from '../../lib/graphql-http.js';
import type { Logger } from '../../lib/logger.js';
import { PRINCIPAL_HEADER, verifyPrincipalProof } from '../../lib/principal.js';
import { verifyApiKey } from './api-keys.js';

/** Where the router turns an API key into a principal. */
export const VERIFY_API_KEY_PATH = '/internal/api-keys/verify';

/** A secret is under 100 bytes; anything near this limit is not one. */
const BODY_LIMIT_BYTES = 4 * 1024;

/** The internal endpoints of the auth service: a `routes` handler of startSubgraphServer. */
export type InternalRoutes = (req: IncomingMessage, res: ServerResponse, path: string) => Promise<boolean>;

/**
 * `POST /internal/api-keys/verify` with `{"secret": "ak_…"}`, for the router only (its proof as a
 * `service: "router"` principal). Answers:
 * - 200 `{"userId", "apiKeyId", "scopes": [...]}` for a live key;
 * - 404 `{"error": "invalid"}` for a malformed, unknown or revoked one;
 * - 401 `{"error": "unauthenticated"}` without a valid router proof (checked before the body is read);
 * - 400 `{"error": "bad_request"}` when the body is not JSON with a string `secret`;
 * - 413 `{"error": "payload_too_large"}` beyond 4 KB; 500 `{"error": "internal"}` if the database fails.
 */
export function internalRoutes(deps: { orm: MikroORM; internalSecret: string; log: Logger }): InternalRoutes {
  const { orm, internalSecret, log } = deps;

  const fromRouter = (req: IncomingMessage): boolean => {
    try {
      const { principal } = verifyPrincipalProof(headerValue(req, PRINCIPAL_HEADER), internalSecret);
      return principal.kind === 'service' && principal.service === 'router';
    } catch {
      // The same answer as a valid proof for someone else.
      return false;
    }
  };

  return async (req, res, path) => {
    if (path !== VERIFY_API_KEY_PATH || req.method !== 'POST') return false;
    if (!fromRouter(req)) {
      sendJson(res, 401, { error: 'unauthenticated' });
      return true;
    }
    let body: unknown;
    try {
      body = await readJsonBody(req, { limitBytes: BODY_LIMIT_BYTES });
    } catch (error) {
      if (!(error instanceof RequestError)) throw error;
      sendJson(res, error.status === 413 ? 413 : 400, { error: error.status === 413 ? 'payload_too_large' : 'bad_request' });
      return true;
    }
    const secret = (body as { secret?: unknown } | undefined)?.secret;
    if (typeof secret !== 'string') {
      sendJson(res, 400, { error: 'bad_request' });
      return true;
    }
    try {
      const key = await verifyApiKey(orm.em.fork(), secret, (write) => {
        write.catch((error: unknown) => log.warn({ err: error }, 'recording API key use failed'));
      });
      if (key) sendJson(res, 200, key);
      else sendJson(res, 404, { error: 'invalid' });
    } catch (error) {
      log.error({ err: error }, 'API key verification failed');
      sendJson(res, 500, { error: 'internal' });
    }
    return true;
  };
}
