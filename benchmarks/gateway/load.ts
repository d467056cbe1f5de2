import { coresOf, coreTicks, cpuMs, nodeCommand, processTree, residentBytes, sleep, spawnProcess, type BenchChild } from '../support/processes.js';

/** A contender that used at most one 10 ms clock tick of CPU over {@link IDLE_SAMPLE_MS} is idle. */
const IDLE_CPU_MS = 10;
const IDLE_SAMPLE_MS = 200;

/**
 * Waits until the process tree at `rootPid` is idle (or `maxMs` passed): a load run that ends
 * (its time is up, or a warm-up reached its limit) drops the requests still in flight, and the
 * contender goes on working on them for a while. Measuring the next window, or the next contender
 * on the same cores, during that tail would charge it to the wrong one.
 */
export async function waitIdle(rootPid: number, maxMs = 15_000): Promise<void> {
  const deadline = Date.now() + maxMs;
  while (Date.now() < deadline) {
    const pids = processTree(rootPid);
    const before = cpuMs(pids);
    await sleep(IDLE_SAMPLE_MS);
    if (cpuMs(pids) - before <= IDLE_CPU_MS) return;
  }
}

/** What the load generator process is asked to do. */
export interface LoadPlan {
  url: string;
  body: string;
  headers: Record<string, string>;
  connections: number;
  /** Answers to wait for before measuring (0: none), within `warmupMaxSeconds`. */
  warmupRequests: number;
  warmupMaxSeconds: number;
  /** The measured window; 0: warm up only (the answer is then an empty result). */
  seconds: number;
  /** Send back every latency (sorted), so that windows of several rounds can be merged. */
  keepLatencies: boolean;
}

/** What it answers for the measured window. */
export interface LoadResult {
  requests: number;
  seconds: number;
  latenciesMs: number[];
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  /** Connection errors and timeouts. */
  errors: number;
  non2xx: number;
  /** Answers whose body holds "errors" (2xx or not). */
  graphqlErrors: number;
  bytes: number;
}

/** One measured window, with what the contender's processes used meanwhile. */
export interface Window extends LoadResult {
  /** Peak resident memory of the contender's process tree, sampled every 100 ms from warm-up on. */
  peakRssBytes: number;
  /** CPU time the contender's processes used during the measured window. */
  cpuMs: number;
  /**
   * CPU time everything else used on the contender's cores during the window, in ms (other work on
   * a shared machine): the RPS of a window with much of it is low for reasons of its own.
   */
  foreignCpuMs: number;
}

/** The load generator process, pinned to the load cores, started once for all windows. */
export class LoadGenerator {
  private readonly process: BenchChild;

  private readonly sutCores: number[];

  /** @param cpus where the generator runs; @param sutCpus the contenders' cores, watched for other work. */
  constructor(cpus: string | undefined, sutCpus: string | undefined) {
    this.process = spawnProcess('load generator', nodeCommand('benchmarks/gateway/load-main.ts'), { cpus, pin: 'spawn', stdin: true });
    this.sutCores = sutCpus ? coresOf(sutCpus) : [];
  }

  /** Runs `plan` against a contender whose process tree starts at `contenderPid`. */
  async run(plan: LoadPlan, contenderPid: number): Promise<Window> {
    let pids = processTree(contenderPid);
    let peakRssBytes = residentBytes(pids);
    let samples = 0;
    const sampler = setInterval(() => {
      // Workers appear and go rarely: the process table is read once a second, memory ten times.
      if (++samples % 10 === 0) pids = processTree(contenderPid);
      peakRssBytes = Math.max(peakRssBytes, residentBytes(pids));
    }, 100);
    try {
      if (plan.warmupRequests > 0) {
        // Warm up, then let the contender finish what the warm-up left in flight before measuring.
        await this.exchange({ ...plan, seconds: 0 }, 'result', (plan.warmupMaxSeconds + 60) * 1000);
        await waitIdle(contenderPid);
      }
      await this.exchange({ ...plan, warmupRequests: 0 }, 'measuring', 60_000);
      const cpuAtStart = cpuMs(pids);
      const coresAtStart = coreTicks(this.sutCores);
      const line = await this.reply('result', (plan.seconds + 60) * 1000);
      const used = cpuMs(processTree(contenderPid)) - cpuAtStart;
      const coresAtEnd = coreTicks(this.sutCores);
      // Jiffies are 10 ms.
      const foreignCpuMs = Math.max(0, (coresAtEnd.busy - coresAtStart.busy) * 10 - used);
      const { result } = JSON.parse(line) as { result: LoadResult };
      // What the window left in flight is finished before the next window, of this contender or another.
      await waitIdle(contenderPid);
      return { ...result, peakRssBytes, cpuMs: used, foreignCpuMs };
    } finally {
      clearInterval(sampler);
    }
  }

  /** Sends `plan` and waits for the generator's `kind` line. */
  private async exchange(plan: LoadPlan, kind: 'measuring' | 'result', timeoutMs: number): Promise<string> {
    const reply = this.reply(kind, timeoutMs);
    this.process.child.stdin!.write(`${JSON.stringify(plan)}\n`);
    return reply;
  }

  /** The generator's next `{"<kind>"...}` line; its `{"failed"...}` line as an error. */
  private async reply(kind: 'measuring' | 'result', timeoutMs: number): Promise<string> {
    const line = await this.process.line((l) => l.startsWith(`{"${kind}"`) || l.startsWith('{"failed"'), timeoutMs);
    if (line.startsWith('{"failed"')) throw new Error((JSON.parse(line) as { failed: string }).failed);
    return line;
  }

  stop(): Promise<void> {
    this.process.child.stdin!.end();
    return this.process.stop();
  }
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

/** Several windows of one contender as one: requests over total time, percentiles over all latencies. */
export function mergeWindows(windows: readonly Window[]): Window {
  if (windows.length === 1) return windows[0];
  const latencies = windows.flatMap((w) => w.latenciesMs).sort((a, b) => a - b);
  const sum = (pick: (w: Window) => number) => windows.reduce((total, w) => total + pick(w), 0);
  return {
    requests: sum((w) => w.requests),
    seconds: sum((w) => w.seconds),
    latenciesMs: latencies,
    p50Ms: percentile(latencies, 50),
    p95Ms: percentile(latencies, 95),
    p99Ms: percentile(latencies, 99),
    errors: sum((w) => w.errors),
    non2xx: sum((w) => w.non2xx),
    graphqlErrors: sum((w) => w.graphqlErrors),
    bytes: sum((w) => w.bytes),
    peakRssBytes: Math.max(...windows.map((w) => w.peakRssBytes)),
    cpuMs: sum((w) => w.cpuMs),
    foreignCpuMs: sum((w) => w.foreignCpuMs),
  };
}
