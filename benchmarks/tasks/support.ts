/**
 * What the task and startup benchmarks share: pinned child processes, fresh PostgreSQL databases
 * and RabbitMQ vhosts (the test helpers, so cleanup and the vhost lock are the same as the e2e
 * suite's), Redis prefixes, CPU accounting from /proc, and percentiles.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Redis } from 'ioredis';

export const ROOT = resolve(new URL('../..', import.meta.url).pathname);
export const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

export interface Child {
  name: string;
  child: ChildProcess;
  output: () => string;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when it has exited. */
  stop: (graceMs?: number) => Promise<void>;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
}

/**
 * `node [nodeArgs] --import tsx <entry>` as its own process, under `taskset -c <cpus>` when given
 * (taskset execs node, so the pid is node's). Output is kept (the last 50 kB) for failure reports.
 */
export function spawnNode(
  name: string,
  entry: string,
  env: Record<string, string>,
  options: { cpus?: string | null; nodeArgs?: string[]; inheritEnv?: boolean } = {},
): Child {
  const args = [...(options.nodeArgs ?? []), '--import', 'tsx', resolve(ROOT, entry)];
  const [command, argv] = options.cpus ? ['taskset', ['-c', options.cpus, process.execPath, ...args]] : [process.execPath, args];
  const baseEnv = options.inheritEnv ? (process.env as Record<string, string>) : { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp' };
  const child = spawn(command as string, argv as string[], {
    cwd: ROOT,
    env: { ...baseEnv, NODE_ENV: 'production', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  const keep = (chunk: Buffer) => {
    log = (log + chunk.toString()).slice(-50_000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
  return {
    name,
    child,
    output: () => log,
    exited,
    stop: async (graceMs = 10_000) => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Polls `url` until it answers 200, or fails with the process's output. */
export async function waitForHealthy(url: string, service: Child, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (service.child.exitCode !== null) throw new Error(`${service.name} exited with ${service.child.exitCode}:\n${service.output()}`);
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(1000) });
      if (response.ok) return;
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  throw new Error(`${service.name} was not healthy at ${url} within ${timeoutMs} ms:\n${service.output()}`);
}

/**
 * Runs a load script (a child process pinned to the load core) that prints its result as one JSON
 * line on stdout, and returns that result.
 */
export async function runJsonChild<T>(name: string, entry: string, config: unknown, cpus: string | null | undefined, timeoutMs: number): Promise<T> {
  const child = spawnNode(name, entry, { BENCH_CONFIG: JSON.stringify(config) }, { cpus, inheritEnv: true });
  let stdout = '';
  child.child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  const timer = setTimeout(() => child.child.kill('SIGKILL'), timeoutMs);
  const code = await child.exited;
  clearTimeout(timer);
  const line = stdout.trim().split('\n').filter((l) => l.startsWith('{')).at(-1);
  if (code !== 0 || !line) throw new Error(`${name} exited with ${code}:\n${child.output().slice(-5000)}`);
  return JSON.parse(line) as T;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The value at quantile q (0..1) of `sorted` (ascending), or null when empty. */
export function quantile(sorted: ArrayLike<number>, q: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

export function round(value: number | null, digits = 1): number | null {
  if (value === null || !Number.isFinite(value)) return null;
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** Deletes every key under `prefix` (best effort). */
export async function deleteRedisPrefix(prefix: string): Promise<void> {
  const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) await redis.unlink(...keys);
    } while (cursor !== '0');
  } catch {
    // keys expire anyway
  } finally {
    redis.disconnect();
  }
}

// ---------------------------------------------------------------- CPU accounting

const TICKS_PER_SECOND = 100; // USER_HZ on Linux

function ticksOf(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command (which may hold spaces) in parentheses; utime and stime are 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return null;
  }
}

function cmdlineOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
  } catch {
    return '';
  }
}

function commOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

/** The shared services by their process names: every PostgreSQL backend counts as "postgres". */
const SERVICE_COMMS: Record<string, string> = { postgres: 'postgres', 'redis-server': 'redis', 'beam.smp': 'rabbitmq' };

/**
 * CPU seconds used between two snapshots by each named process of ours and by the shared services
 * (PostgreSQL, Redis, RabbitMQ, all of their processes), to show where a pipeline's time goes.
 * Redis and RabbitMQ count whole (other users of the machine included). Counted per pid, so a PostgreSQL backend that started in between counts from zero and one that
 * exited in between is left out.
 */
export class CpuMeter {
  private before = new Map<number, number>();

  /**
   * @param named our processes, by the name they are reported under
   * @param database when set, only the PostgreSQL backends connected to this database count
   */
  constructor(
    private readonly named: () => Record<string, number[]>,
    private readonly database?: string,
  ) {}

  /** Ticks per pid, and the group each pid counts under. */
  private snapshot(): { ticks: Map<number, number>; groups: Map<number, string> } {
    const ticks = new Map<number, number>();
    const groups = new Map<number, string>();
    for (const [name, pids] of Object.entries(this.named())) for (const pid of pids) groups.set(pid, name);
    for (const entry of readdirSync('/proc')) {
      const pid = Number(entry);
      if (!Number.isInteger(pid)) continue;
      const service = SERVICE_COMMS[commOf(pid)];
      if (!service || groups.has(pid)) continue;
      // PostgreSQL backends name their database in their title: count only ours.
      if (service === 'postgres' && this.database && !cmdlineOf(pid).includes(` ${this.database} `)) continue;
      groups.set(pid, service);
    }
    for (const pid of groups.keys()) {
      const t = ticksOf(pid);
      if (t !== null) ticks.set(pid, t);
    }
    return { ticks, groups };
  }

  start(): void {
    this.before = this.snapshot().ticks;
  }

  /** CPU seconds per process name since start(). */
  stop(): Record<string, number> {
    const { ticks, groups } = this.snapshot();
    const used: Record<string, number> = {};
    for (const [pid, t] of ticks) {
      const group = groups.get(pid)!;
      used[group] = (used[group] ?? 0) + (t - (this.before.get(pid) ?? 0)) / TICKS_PER_SECOND;
    }
    for (const key of Object.keys(used)) used[key] = Math.round(used[key] * 100) / 100;
    return used;
  }
}
