import { GraphQLError, type GraphQLFormattedError } from 'graphql';
import type { Logger } from 'pino';

/**
 * The closed set of codes clients may see. Anything else reaching a client is masked as
 * INTERNAL_SERVER_ERROR with a generic message; the original goes to the log.
 */
export const PUBLIC_ERROR_CODES = [
  'UNAUTHENTICATED',
  'FORBIDDEN',
  'BAD_USER_INPUT',
  'NOT_FOUND',
  'CONFLICT',
  'RATE_LIMITED',
  'OPERATION_TOO_COMPLEX',
  'PAYLOAD_TOO_LARGE',
  'BAD_REQUEST',
  'GRAPHQL_PARSE_FAILED',
  'GRAPHQL_VALIDATION_FAILED',
  'PERSISTED_QUERY_NOT_FOUND',
  'PERSISTED_QUERY_NOT_SUPPORTED',
  'OPERATION_RESOLUTION_FAILURE',
  'SERVICE_UNAVAILABLE',
  'INTERNAL_SERVER_ERROR',
] as const;
export type ErrorCode = (typeof PUBLIC_ERROR_CODES)[number];

/**
 * Request-level refusals set the HTTP status. Errors thrown by resolvers must not: a subgraph that
 * answers 401 for a wrong password would make the gateway replace the message with "401: Unauthorized".
 */
const HTTP_STATUS: Partial<Record<ErrorCode, number>> = {
  RATE_LIMITED: 429,
  PAYLOAD_TOO_LARGE: 413,
  BAD_REQUEST: 400,
  OPERATION_TOO_COMPLEX: 400,
};

export function appError(code: ErrorCode, message: string, extra: Record<string, unknown> = {}): GraphQLError {
  const status = HTTP_STATUS[code];
  return new GraphQLError(message, {
    extensions: { code, ...extra, ...(status ? { http: { status } } : {}) },
  });
}

export const unauthenticated = (message = 'Authentication required.') => appError('UNAUTHENTICATED', message);
/** A whole request refused for its credentials (HTTP 401), as opposed to one field refused. */
export function unauthenticatedRequest(message: string): GraphQLError {
  return new GraphQLError(message, { extensions: { code: 'UNAUTHENTICATED', http: { status: 401 } } });
}
export const forbidden = (message = 'Not allowed.') => appError('FORBIDDEN', message);
export const notFound = (what: string) => appError('NOT_FOUND', `${what} not found.`);
export const badInput = (message: string, field?: string) =>
  appError('BAD_USER_INPUT', message, field ? { field } : {});

const SAFE = new Set<string>(PUBLIC_ERROR_CODES);

/**
 * `formatError` for every server: keeps the message of errors that carry a public code, masks the
 * rest, and never lets a stack trace or driver detail out.
 */
export function maskError(log: Logger, formatted: GraphQLFormattedError, error: unknown): GraphQLFormattedError {
  const code = typeof formatted.extensions?.code === 'string' ? formatted.extensions.code : undefined;
  if (code && SAFE.has(code) && code !== 'INTERNAL_SERVER_ERROR') {
    const { stacktrace: _stack, exception: _exception, http: _http, ...extensions } = formatted.extensions ?? {};
    return { message: formatted.message, locations: formatted.locations, path: formatted.path, extensions };
  }
  log.error({ err: error, path: formatted.path }, 'internal error masked');
  return {
    message: 'Internal server error.',
    locations: formatted.locations,
    path: formatted.path,
    extensions: { code: 'INTERNAL_SERVER_ERROR' },
  };
}
