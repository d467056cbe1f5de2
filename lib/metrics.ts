import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { PUBLIC_ERROR_CODES } from './errors.js';
import { headerValue, sendJson } from './graphql-http.js';

/**
 * Prometheus metrics of one service, answered at `/metrics` on the service's own port in the text
 * exposition format. Every series carries `service="<name>"`. `npm start` runs all services in one
 * process, so each has a registry of its own; the process's own figures (CPU, memory, event-loop
 * delay, garbage collection) are collected once per process and shown by every service in it.
 */
export class ServiceMetrics {
  readonly registry = new Registry();

  constructor(readonly service: string) {
    this.registry.setDefaultLabels({ service });
  }

  counter<L extends string>(name: string, help: string, labelNames: readonly L[] = []): Counter<L> {
    return new Counter({ name, help, labelNames, registers: [this.registry] });
  }

  histogram<L extends string>(name: string, help: string, labelNames: readonly L[], buckets: number[] = LATENCY_BUCKETS): Histogram<L> {
    return new Histogram({ name, help, labelNames, buckets, registers: [this.registry] });
  }

  /** A gauge read at each scrape (open sockets, running tasks). */
  observedGauge(name: string, help: string, read: () => number): Gauge {
    return new Gauge({
      name,
      help,
      registers: [this.registry],
      collect() {
        this.set(read());
      },
    });
  }

  /** A counter read at each scrape from a running total kept elsewhere (it only ever grows). */
  observedCounter(name: string, help: string, read: () => number): Counter {
    let reported = 0;
    return new Counter({
      name,
      help,
      registers: [this.registry],
      collect() {
        const total = read();
        if (total > reported) this.inc(total - reported);
        reported = total;
      },
    });
  }

  /** The scrape: this process's figures, then the service's. */
  async text(): Promise<string> {
    return `${await processRegistry().metrics()}\n${await this.registry.metrics()}`;
  }
}

/** Seconds, from a fast cache hit to a slow subgraph. */
export const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

let processMetrics: Registry | undefined;

function processRegistry(): Registry {
  if (!processMetrics) {
    processMetrics = new Registry();
    collectDefaultMetrics({ register: processMetrics });
  }
  return processMetrics;
}

const KNOWN_CODES: ReadonlySet<string> = new Set(PUBLIC_ERROR_CODES);

/** The code of an answer refused at the HTTP level, whose errors were not seen being made. */
export function codeForStatus(status: number): string | undefined {
  if (status < 400) return undefined;
  if (status === 401) return 'UNAUTHENTICATED';
  if (status === 404) return 'NOT_FOUND';
  if (status === 413) return 'PAYLOAD_TOO_LARGE';
  if (status === 429) return 'RATE_LIMITED';
  return status >= 500 ? 'INTERNAL_SERVER_ERROR' : 'BAD_REQUEST';
}

/**
 * A request's outcome as a label: `ok`, or the first error code it answered with, or the code its
 * HTTP status stands for. Always one of the closed set of public codes, never a value a caller chose.
 */
export function outcomeLabel(errorCodes: readonly string[], status = 200): string {
  const code = errorCodes[0] ?? codeForStatus(status);
  if (code === undefined) return 'ok';
  return KNOWN_CODES.has(code) ? code : 'INTERNAL_SERVER_ERROR';
}

/**
 * Answers `GET|HEAD /metrics`. With `token` set, only to `Authorization: Bearer <token>` (401
 * otherwise); without it, to anyone who reaches the port. True when the request was one.
 */
export async function answerMetrics(req: IncomingMessage, res: ServerResponse, path: string, metrics: ServiceMetrics, token: string | undefined): Promise<boolean> {
  if (path !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) return false;
  if (token !== undefined && !bearerMatches(headerValue(req, 'authorization'), token)) {
    res.setHeader('www-authenticate', 'Bearer realm="metrics"');
    sendJson(res, 401, { error: 'unauthorized', message: 'GET /metrics with Authorization: Bearer <METRICS_TOKEN>.' });
    return true;
  }
  const text = await metrics.text();
  res.statusCode = 200;
  res.setHeader('content-type', metrics.registry.contentType);
  res.setHeader('content-length', Buffer.byteLength(text));
  res.setHeader('cache-control', 'no-store');
  res.end(req.method === 'HEAD' ? undefined : text);
  return true;
}

function bearerMatches(header: string | undefined, token: string): boolean {
  if (!header?.startsWith('Bearer ')) return false;
  const given = Buffer.from(header.slice(7));
  const expected = Buffer.from(token);
  return given.length === expected.length && timingSafeEqual(given, expected);
}
