/**
 * The load generator, as its own process so that it can be pinned to the load core:
 * `node --import tsx benchmarks/gateway/load-main.ts`. Reads one {@link LoadPlan} per stdin line;
 * for each, warms up with `warmupRequests` answers (discarded), prints `{"measuring":true}`, runs it
 * for `seconds` and prints `{"result":LoadResult}` (`seconds` 0: warm-up only, an empty result).
 * Exits when stdin ends.
 */
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';
import type { LoadPlan, LoadResult } from './load.js';

interface AutocannonResult {
  requests: { total: number };
  duration: number;
  errors: number;
  timeouts: number;
  non2xx: number;
  mismatches: number;
  throughput: { total: number };
}

interface AutocannonInstance {
  stop(): void;
  on(event: 'response', listener: (client: unknown, statusCode: number, bytes: number, responseTimeMs: number) => void): void;
}

type Autocannon = (
  options: {
    url: string;
    connections: number;
    duration?: number;
    amount?: number;
    method: 'POST';
    headers: Record<string, string>;
    body: string;
    verifyBody?: (body: string) => boolean;
    timeout?: number;
  },
  done: (error: Error | null, result: AutocannonResult) => void,
) => AutocannonInstance;

const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

/** 0 when nothing was answered (JSON has no NaN). */
function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

/** Load for `seconds`, or until `requests` answers when given (then `seconds` is the most it may take). */
function run(plan: LoadPlan, seconds: number, latencies?: number[], requests?: number): Promise<AutocannonResult> {
  return new Promise((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const instance = autocannon(
      {
        url: plan.url,
        connections: plan.connections,
        // autocannon wants at least one request per connection.
        ...(requests ? { amount: Math.max(requests, plan.connections) } : { duration: seconds }),
        method: 'POST',
        headers: { 'content-type': 'application/json', ...plan.headers },
        body: plan.body,
        // A 200 that carries GraphQL errors is a failed request too.
        verifyBody: (body) => !body.includes('"errors"'),
        timeout: 30,
      },
      (error, result) => {
        clearTimeout(timer);
        if (error) reject(error);
        else resolve(result);
      },
    );
    if (requests) timer = setTimeout(() => instance.stop(), seconds * 1000);
    if (latencies) instance.on('response', (_client, _status, _bytes, ms) => latencies.push(ms));
  });
}

async function measure(plan: LoadPlan): Promise<LoadResult> {
  // Warm by answers, not time: a JIT needs so many calls however slow the machine is today.
  if (plan.warmupRequests > 0) await run(plan, plan.warmupMaxSeconds, undefined, plan.warmupRequests);
  if (plan.seconds === 0) {
    // Warm-up only.
    return { requests: 0, seconds: 0, latenciesMs: [], p50Ms: 0, p95Ms: 0, p99Ms: 0, errors: 0, non2xx: 0, graphqlErrors: 0, bytes: 0 };
  }
  console.log(JSON.stringify({ measuring: true }));
  const latencies: number[] = [];
  const started = performance.now();
  const result = await run(plan, plan.seconds, latencies);
  const elapsedSeconds = (performance.now() - started) / 1000;
  const sorted = Float64Array.from(latencies).sort();
  return {
    requests: result.requests.total,
    seconds: elapsedSeconds,
    latenciesMs: plan.keepLatencies ? Array.from(sorted, (ms) => Math.round(ms * 100) / 100) : [],
    p50Ms: percentile(sorted, 50),
    p95Ms: percentile(sorted, 95),
    p99Ms: percentile(sorted, 99),
    // autocannon counts timeouts among its errors.
    errors: result.errors,
    non2xx: result.non2xx,
    graphqlErrors: result.mismatches,
    bytes: result.throughput.total,
  };
}

for await (const line of createInterface({ input: process.stdin })) {
  if (line.trim() === '') continue;
  try {
    console.log(JSON.stringify({ result: await measure(JSON.parse(line) as LoadPlan) }));
  } catch (error) {
    console.log(JSON.stringify({ failed: String((error as Error).stack ?? error) }));
  }
}
