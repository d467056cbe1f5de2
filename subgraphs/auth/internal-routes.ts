import express, { type ErrorRequestHandler, type Express, type RequestHandler } from 'express';
import type { MikroORM } from '@mikro-orm/postgresql';
import type { Logger } from '../../lib/logger.js';
import { PRINCIPAL_HEADER, verifyPrincipalProof } from '../../lib/principal.js';
import { verifyApiKey } from './api-keys.js';

/** Where the router turns an API key into a principal. */
export const VERIFY_API_KEY_PATH = '/internal/api-keys/verify';

/** A secret is under 100 bytes; anything near this limit is not one. */
const BODY_LIMIT = '4kb';

/**
 * `POST /internal/api-keys/verify` with `{"secret": "ak_…"}`, for the router only (its proof as a
 * `service: "router"` principal). Answers:
 * - 200 `{"userId", "apiKeyId", "scopes": [...]}` for a live key;
 * - 404 `{"error": "invalid"}` for a malformed, unknown or revoked one;
 * - 401 `{"error": "unauthenticated"}` without a valid router proof (checked before the body is read);
 * - 400 `{"error": "bad_request"}` when the body is not JSON with a string `secret`;
 * - 413 `{"error": "payload_too_large"}` beyond 4 KB; 500 `{"error": "internal"}` if the database fails.
 */
export function mountInternalRoutes(app: Express, deps: { orm: MikroORM; internalSecret: string; log: Logger }): void {
  const { orm, internalSecret, log } = deps;

  const onlyRouter: RequestHandler = (req, res, next) => {
    try {
      const { principal } = verifyPrincipalProof(req.header(PRINCIPAL_HEADER), internalSecret);
      if (principal.kind === 'service' && principal.service === 'router') return next();
    } catch {
      // Falls through to the same answer as a valid proof for someone else.
    }
    res.status(401).json({ error: 'unauthenticated' });
  };

  const verify: RequestHandler = async (req, res) => {
    const secret = (req.body as { secret?: unknown } | undefined)?.secret;
    if (typeof secret !== 'string') {
      res.status(400).json({ error: 'bad_request' });
      return;
    }
    const key = await verifyApiKey(orm.em.fork(), secret, (write) => {
      write.catch((error: unknown) => log.warn({ err: error }, 'recording API key use failed'));
    });
    if (!key) {
      res.status(404).json({ error: 'invalid' });
      return;
    }
    res.json(key);
  };

  const errors: ErrorRequestHandler = (error: { type?: string; status?: number }, _req, res, _next) => {
    if (error.type === 'entity.too.large') {
      res.status(413).json({ error: 'payload_too_large' });
    } else if (error.status === 400 || error.type === 'entity.parse.failed') {
      res.status(400).json({ error: 'bad_request' });
    } else {
      log.error({ err: error }, 'API key verification failed');
      res.status(500).json({ error: 'internal' });
    }
  };

  const router = express.Router();
  router.post(VERIFY_API_KEY_PATH, onlyRouter, express.json({ limit: BODY_LIMIT }), verify);
  router.use(errors);
  app.use(router);
}
