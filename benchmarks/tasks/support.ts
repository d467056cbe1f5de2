/**
 * What the task benchmark's parts share: load scripts that answer in JSON, Redis prefixes, CPU
 * accounting per process from /proc, and percentiles.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { spawnNode, ticksOf } from '../support/processes.js';

/**
 * Runs a load script (a child process pinned to the load core) that prints its result as one JSON
 * line on stdout, and returns that result.
 */
export async function runJsonChild<T>(name: string, entry: string, config: unknown, cpus: string | null | undefined, timeoutMs: number): Promise<T> {
  const child = spawnNode(name, entry, { env: { BENCH_CONFIG: JSON.stringify(config) }, cpus, pin: 'spawn', inheritEnv: true });
  let stdout = '';
  child.child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  const timer = setTimeout(() => child.child.kill('SIGKILL'), timeoutMs);
  const code = await child.exited;
  clearTimeout(timer);
  const line = stdout.trim().split('\n').filter((l) => l.startsWith('{')).at(-1);
  if (code !== 0 || !line) throw new Error(`${name} exited with ${code}:\n${child.output().slice(-5000)}`);
  return JSON.parse(line) as T;
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

// ---------------------------------------------------------------- CPU accounting

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
      used[group] = (used[group] ?? 0) + (t - (this.before.get(pid) ?? 0)) / 100; // ticks are 10 ms (USER_HZ 100)
    }
    for (const key of Object.keys(used)) used[key] = Math.round(used[key] * 100) / 100;
    return used;
  }
}
