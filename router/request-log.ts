import { randomUUID } from 'node:crypto';
import type { RequestHandler, Response } from 'express';
import type { Logger } from 'pino';
import { REQUEST_ID_HEADER } from '../lib/principal.js';
import type { RequestRecord } from './context.js';

/** An incoming id is kept only if it cannot smuggle anything into logs or headers. */
const SANE_REQUEST_ID = /^[A-Za-z0-9._-]{1,128}$/;

export function requestIdFrom(header: string | string[] | undefined): string {
  return typeof header === 'string' && SANE_REQUEST_ID.test(header) ? header : randomUUID();
}

export function recordOf(res: Response): RequestRecord {
  return res.locals.record as RequestRecord;
}

/** For responses whose errors the router did not see being made (Apollo's own HTTP-level refusals). */
function codeForStatus(status: number): string | undefined {
  if (status < 400) return undefined;
  if (status === 404) return 'NOT_FOUND';
  return status >= 500 ? 'INTERNAL_SERVER_ERROR' : 'BAD_REQUEST';
}

/**
 * Gives each request its id (echoed in `x-request-id`) and writes one line when it ends: id,
 * operation, principal, status, duration and error codes. Never headers, variables or bodies,
 * which is where tokens, passwords and secrets travel.
 */
export function requestLog(log: Logger): RequestHandler {
  return (req, res, next) => {
    const started = process.hrtime.bigint();
    // Read now: routers mounted on a path rewrite req.url while they run.
    const path = req.path;
    const record: RequestRecord = {
      requestId: requestIdFrom(req.headers[REQUEST_ID_HEADER]),
      clientIp: normalizeIp(req.ip ?? req.socket.remoteAddress ?? 'unknown'),
      errorCodes: [],
    };
    res.locals.record = record;
    res.setHeader(REQUEST_ID_HEADER, record.requestId);
    res.once('close', () => {
      const status = res.statusCode;
      if (record.errorCodes.length === 0) {
        const code = codeForStatus(status);
        if (code) record.errorCodes.push(code);
      }
      const line = {
        requestId: record.requestId,
        method: req.method,
        path,
        operationName: record.operationName ?? null,
        principal: record.principalId ?? 'anonymous',
        status,
        durationMs: Math.round(Number(process.hrtime.bigint() - started) / 1e4) / 100,
        ...(record.errorCodes.length > 0 ? { errorCodes: record.errorCodes } : {}),
        ...(res.writableFinished ? {} : { aborted: true }),
      };
      if (status >= 500) log.warn(line, 'request');
      else log.info(line, 'request');
    });
    next();
  };
}

/** `::ffff:1.2.3.4` and `1.2.3.4` are one client. */
function normalizeIp(ip: string): string {
  return ip.startsWith('::ffff:') ? ip.slice(7) : ip;
}
