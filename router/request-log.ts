import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { codeForStatus } from '../lib/metrics.js';
import { REQUEST_ID_HEADER } from '../lib/principal.js';
import type { RequestRecord } from './context.js';
import { clientIpOf } from './subscriptions.js';

/** An incoming id is kept only if it cannot smuggle anything into logs or headers. */
const SANE_REQUEST_ID = /^[A-Za-z0-9._-]{1,128}$/;

export function requestIdFrom(header: string | string[] | undefined): string {
  return typeof header === 'string' && SANE_REQUEST_ID.test(header) ? header : randomUUID();
}


/**
 * Gives a request its id (echoed in `x-request-id`) and writes one line when it ends: id,
 * operation, principal, status, duration and error codes. Never headers, variables or bodies,
 * which is where tokens, passwords and secrets travel. The record is filled in while the request runs.
 */
export function startRequestRecord(
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
  log: Logger,
  trustProxyHops: number,
  onEnd?: (record: RequestRecord, status: number, seconds: number) => void,
): RequestRecord {
  const started = process.hrtime.bigint();
  const record: RequestRecord = {
    requestId: requestIdFrom(req.headers[REQUEST_ID_HEADER]),
    clientIp: clientIpOf(req, trustProxyHops),
    errorCodes: [],
  };
  res.setHeader(REQUEST_ID_HEADER, record.requestId);
  res.once('close', () => {
    const status = res.statusCode;
    if (record.errorCodes.length === 0) {
      const code = codeForStatus(status);
      if (code) record.errorCodes.push(code);
    }
    const elapsed = Number(process.hrtime.bigint() - started);
    onEnd?.(record, status, elapsed / 1e9);
    const level = status >= 500 ? 'warn' : 'info';
    if (!log.isLevelEnabled(level)) return;
    const line = {
      requestId: record.requestId,
      method: req.method,
      path,
      operationName: record.operationName ?? null,
      principal: record.principalId ?? 'anonymous',
      status,
      durationMs: Math.round(elapsed / 1e4) / 100,
      ...(record.errorCodes.length > 0 ? { errorCodes: record.errorCodes } : {}),
      ...(res.writableFinished ? {} : { aborted: true }),
    };
    log[level](line, 'request');
  });
  return record;
}
