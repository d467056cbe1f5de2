import type { IncomingMessage, ServerResponse } from 'node:http';

/** Request headers a browser client may send: credentials, Apollo's CSRF/preflight headers, tracing. */
const ALLOWED_HEADERS = [
  'authorization',
  'content-type',
  'x-api-key',
  'x-request-id',
  'apollo-require-preflight',
  'x-apollo-operation-name',
  'apollographql-client-name',
  'apollographql-client-version',
].join(', ');

/** Response headers a browser client may read. */
const EXPOSED_HEADERS = ['x-request-id', 'ratelimit-limit', 'ratelimit-remaining', 'ratelimit-reset', 'retry-after'].join(', ');

/**
 * CORS from an allow-list. A listed origin gets its own origin back with credentials allowed; `*`
 * in the list lets any origin in, without credentials; any other origin gets no CORS headers, so
 * the browser keeps the response from it. Preflights are answered here (the handler returns true)
 * and never reach GraphQL.
 */
export function cors(origins: readonly string[]): (req: IncomingMessage, res: ServerResponse) => boolean {
  const listed = new Set(origins.filter((origin) => origin !== '*'));
  const anyOrigin = origins.includes('*');
  return (req, res) => {
    const origin = req.headers.origin;
    res.setHeader('vary', 'Origin');
    if (origin !== undefined && (listed.has(origin) || anyOrigin)) {
      if (listed.has(origin)) {
        res.setHeader('access-control-allow-origin', origin);
        res.setHeader('access-control-allow-credentials', 'true');
      } else {
        res.setHeader('access-control-allow-origin', '*');
      }
      res.setHeader('access-control-expose-headers', EXPOSED_HEADERS);
    }
    if (req.method !== 'OPTIONS') return false;
    if (res.hasHeader('access-control-allow-origin')) {
      res.setHeader('access-control-allow-methods', 'GET, POST, OPTIONS');
      res.setHeader('access-control-allow-headers', ALLOWED_HEADERS);
      res.setHeader('access-control-max-age', '600');
    }
    res.statusCode = 204;
    res.end();
    return true;
  };
}
