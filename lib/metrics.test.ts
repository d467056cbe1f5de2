import { createServer } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { listen } from './http.js';
import { answerMetrics, outcomeLabel, ServiceMetrics } from './metrics.js';

describe('service metrics', () => {
  const cleanups: (() => void)[] = [];
  afterEach(() => cleanups.splice(0).forEach((cleanup) => cleanup()));

  async function serve(metrics: ServiceMetrics, token?: string): Promise<string> {
    const server = createServer((req, res) => {
      answerMetrics(req, res, req.url ?? '/', metrics, token).then((answered) => {
        if (!answered) res.writeHead(404).end();
      });
    });
    const port = await listen(server, 0, '127.0.0.1');
    cleanups.push(() => server.close());
    return `http://127.0.0.1:${port}`;
  }

  it("answers /metrics in Prometheus' text format, with the service label, the process's figures and read-at-scrape series", async () => {
    const metrics = new ServiceMetrics('unit');
    const requests = metrics.counter('unit_requests_total', 'Requests.', ['outcome']);
    requests.inc({ outcome: 'ok' }, 3);
    let sockets = 7;
    let sent = 10;
    metrics.observedGauge('unit_sockets', 'Sockets.', () => sockets);
    metrics.observedCounter('unit_sent_total', 'Sent.', () => sent);
    const base = await serve(metrics);

    const first = await fetch(`${base}/metrics`);
    expect(first.status).toBe(200);
    expect(first.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await first.text();
    expect(text).toContain('unit_requests_total{outcome="ok",service="unit"} 3');
    expect(text).toContain('unit_sockets{service="unit"} 7');
    expect(text).toContain('unit_sent_total{service="unit"} 10');
    expect(text).toMatch(/^process_resident_memory_bytes \d+/m);
    expect(text).toMatch(/^nodejs_eventloop_lag_seconds /m);

    sockets = 2;
    sent = 15;
    const second = await (await fetch(`${base}/metrics`)).text();
    expect(second).toContain('unit_sockets{service="unit"} 2');
    expect(second).toContain('unit_sent_total{service="unit"} 15');
    expect((await fetch(`${base}/metrics`, { method: 'HEAD' })).status).toBe(200);
    expect((await fetch(`${base}/metrics`, { method: 'POST' })).status).toBe(404);
  });

  it('answers only the bearer of METRICS_TOKEN when one is set', async () => {
    const base = await serve(new ServiceMetrics('unit'), 'a-token-of-sixteen-chars');
    const missing = await fetch(`${base}/metrics`);
    expect(missing.status).toBe(401);
    expect(missing.headers.get('www-authenticate')).toBe('Bearer realm="metrics"');
    expect(await missing.text()).not.toContain('process_');
    expect((await fetch(`${base}/metrics`, { headers: { authorization: 'Bearer a-token-of-sixteen-charz' } })).status).toBe(401);
    expect((await fetch(`${base}/metrics`, { headers: { authorization: 'Bearer short' } })).status).toBe(401);
    const allowed = await fetch(`${base}/metrics`, { headers: { authorization: 'Bearer a-token-of-sixteen-chars' } });
    expect(allowed.status).toBe(200);
    expect(await allowed.text()).toContain('process_resident_memory_bytes');
  });

  it('labels an outcome with a public code only, never a value a caller chose', () => {
    expect(outcomeLabel([])).toBe('ok');
    expect(outcomeLabel(['RATE_LIMITED', 'NOT_FOUND'])).toBe('RATE_LIMITED');
    expect(outcomeLabel(['whatever a subgraph said'])).toBe('INTERNAL_SERVER_ERROR');
    expect(outcomeLabel([], 401)).toBe('UNAUTHENTICATED');
    expect(outcomeLabel([], 413)).toBe('PAYLOAD_TOO_LARGE');
    expect(outcomeLabel([], 415)).toBe('BAD_REQUEST');
    expect(outcomeLabel([], 503)).toBe('INTERNAL_SERVER_ERROR');
  });
});
