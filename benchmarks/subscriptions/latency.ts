/**
 * The clock and the latency record the publisher and the clients share. The publisher puts
 * `<window>:<publish time in ms>` into each event's delta; the client that receives it subtracts
 * that from its own clock. Both read the same wall clock on one machine
 * (`performance.timeOrigin + performance.now()`: sub-millisecond, and comparable across processes).
 */
export const now = (): number => performance.timeOrigin + performance.now();

export function stampDelta(window: number, at = now()): string {
  return `${window}:${at.toFixed(3)}`;
}

/** The window and the publish time of a delta written by {@link stampDelta}, or null. */
export function readStamp(delta: string | null | undefined): { window: number; at: number } | null {
  if (!delta) return null;
  const colon = delta.indexOf(':');
  if (colon <= 0) return null;
  const window = Number(delta.slice(0, colon));
  const at = Number(delta.slice(colon + 1));
  return Number.isFinite(window) && Number.isFinite(at) ? { window, at } : null;
}

const BUCKET_MS = 0.05;
const BUCKETS = 40_000; // up to 2 s; slower ones count in the last bucket (and in `max`)

/** Latencies in 50 µs buckets: no allocation per sample, percentiles within 0.05 ms. */
export class LatencyHistogram {
  private readonly buckets = new Uint32Array(BUCKETS);
  count = 0;
  sum = 0;
  max = 0;
  /** Receipt time of the first and last sample. */
  first = 0;
  last = 0;

  record(latencyMs: number, receivedAt: number): void {
    const ms = latencyMs < 0 ? 0 : latencyMs;
    this.buckets[Math.min(BUCKETS - 1, Math.floor(ms / BUCKET_MS))] += 1;
    this.count += 1;
    this.sum += ms;
    if (ms > this.max) this.max = ms;
    if (this.first === 0) this.first = receivedAt;
    this.last = receivedAt;
  }

  /** The upper edge of the bucket holding quantile q (0..1), or null without samples. */
  quantile(q: number): number | null {
    if (this.count === 0) return null;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.buckets[i];
      if (seen >= rank) return Math.min((i + 1) * BUCKET_MS, this.max);
    }
    return this.max;
  }

  summary(): LatencySummary {
    return {
      count: this.count,
      p50: this.quantile(0.5),
      p90: this.quantile(0.9),
      p99: this.quantile(0.99),
      p999: this.quantile(0.999),
      max: this.count ? this.max : null,
      mean: this.count ? this.sum / this.count : null,
      first: this.first,
      last: this.last,
    };
  }
}

export interface LatencySummary {
  count: number;
  p50: number | null;
  p90: number | null;
  p99: number | null;
  p999: number | null;
  max: number | null;
  mean: number | null;
  first: number;
  last: number;
}
