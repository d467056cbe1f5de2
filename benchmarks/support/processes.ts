/**
 * The child processes of every benchmark section: spawned with their output kept for failure
 * reports, pinned to cores with `taskset` when the runner can pin, and all stopped when the runner
 * ends — normally, on failure, or when it exits anyway.
 *
 * Pinning waits for readiness by default: a service loads its modules on every core (ten or more
 * Node processes starting at once is most of a section's set-up time) and is moved onto the cores
 * under test, every thread of it and of its children, once it answers (`waitForHealthy`,
 * `waitUntil`, or `pin()` after a readiness line). Nothing is measured before that. Load
 * generators, which have no readiness probe, are pinned from the start (`pin: 'spawn'`).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, readdirSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';

export { freePort } from '../../tests/support/processes.js';

export const ROOT = resolve(new URL('../..', import.meta.url).pathname);

/** Every core of the machine, as a `taskset -c` list. */
export const ALL_CORES = `0-${availableParallelism() - 1}`;

export function sleep(ms: number): Promise<void> {
  return new Promise((done) => setTimeout(done, ms));
}

export interface SpawnOptions {
  /** `taskset -c` list of the cores this process belongs on; unpinned when null or absent. */
  cpus?: string | null;
  /** When to pin: at spawn (`taskset -c` execs it), or once it is ready (default). */
  pin?: 'spawn' | 'ready';
  env?: Record<string, string>;
  /** Start from the runner's whole environment instead of PATH and HOME only. */
  inheritEnv?: boolean;
  /** NODE_ENV unless `env` sets it (default production). */
  nodeEnv?: string;
  /** Open stdin as a pipe. */
  stdin?: boolean;
  /** Open an IPC channel (process.send in the child). */
  ipc?: boolean;
  /** Also append the output to this file (e.g. `--trace-gc` lines). */
  logFile?: string;
  /** Raise the open-file soft limit to the hard one first (one socket per subscriber). */
  raiseFileLimit?: boolean;
  /** Bytes of output kept for reports (default 50 kB). */
  keepBytes?: number;
}

export interface BenchChild {
  name: string;
  child: ChildProcess;
  /** The process's own pid (`taskset` and the shell exec it). */
  pid: number;
  /** The last output, stdout and stderr interleaved. */
  output(): string;
  /** Resolves with the exit code (128 when a signal ended it). */
  exited: Promise<number | null>;
  /** Resolves with the first stdout line that `match` accepts; rejects when the process exits first. */
  line(match: (line: string) => boolean, timeoutMs?: number): Promise<string>;
  /** Moves it (every thread, and its children's) onto its cores; a no-op when unpinned or already pinned. */
  pin(): void;
  /** SIGTERM to it and its children, SIGKILL after `graceMs`; resolves once it has exited. */
  stop(graceMs?: number): Promise<void>;
}

const running = new Set<BenchChild>();

// A runner that dies anyway (or is interrupted: each child has its own process group, which a
// terminal's Ctrl-C does not reach) must not leave servers holding ports and cores.
const killAll = () => {
  for (const started of running) signalGroup(started.child, 'SIGKILL');
};
process.once('exit', killAll);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    killAll();
    process.exit(128 + (signal === 'SIGINT' ? 2 : 15));
  });
}

function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
}

/** Starts `command` (argv) in its own process group; see {@link SpawnOptions}. */
export function spawnProcess(name: string, command: readonly string[], options: SpawnOptions = {}): BenchChild {
  const cpus = options.cpus ?? null;
  const pinAtSpawn = cpus !== null && options.pin === 'spawn';
  // A child inherits the runner's affinity, and the runner keeps itself to the load cores
  // (pinSelf): one pinned later starts on every core instead.
  const argv = pinAtSpawn ? ['taskset', '-c', cpus, ...command] : cpus !== null ? ['taskset', '-c', ALL_CORES, ...command] : [...command];
  const [file, args] = options.raiseFileLimit ? ['sh', ['-c', 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"', 'sh', ...argv]] : [argv[0], argv.slice(1)];
  const base = options.inheritEnv ? (process.env as Record<string, string>) : { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp' };
  const child = spawn(file, args, {
    cwd: ROOT,
    env: { ...base, NODE_ENV: options.nodeEnv ?? 'production', ...options.env },
    stdio: [options.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe', ...(options.ipc ? (['ipc'] as const) : [])],
    detached: true,
  });
  const keepBytes = options.keepBytes ?? 50_000;
  let log = '';
  let pending = '';
  const waiters = new Set<(line: string) => void>();
  child.stdout!.on('data', (chunk: Buffer) => {
    const text = chunk.toString();
    log = (log + text).slice(-keepBytes);
    pending += text;
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) for (const waiter of waiters) waiter(line);
  });
  child.stderr!.on('data', (chunk: Buffer) => {
    log = (log + chunk.toString()).slice(-keepBytes);
  });
  if (options.logFile) {
    const file = createWriteStream(options.logFile, { flags: 'a' });
    child.stdout!.pipe(file);
    child.stderr!.pipe(file);
  }
  const exited = new Promise<number | null>((done) => child.once('exit', (code, signal) => done(code ?? (signal ? 128 : null))));
  let pinned = cpus === null || pinAtSpawn;
  const started: BenchChild = {
    name,
    child,
    pid: child.pid!,
    output: () => log,
    exited,
    line: (match, timeoutMs = 60_000) =>
      new Promise<string>((resolveLine, reject) => {
        if (child.exitCode !== null || child.signalCode !== null) {
          reject(new Error(`${name} has exited (${child.exitCode ?? child.signalCode}):\n${log}`));
          return;
        }
        const timer = setTimeout(() => finish(new Error(`${name} printed no expected line within ${timeoutMs} ms:\n${log}`)), timeoutMs);
        const onLine = (line: string) => {
          if (match(line)) finish(undefined, line);
        };
        const onExit = () => finish(new Error(`${name} exited (${child.exitCode ?? child.signalCode}) before it was ready:\n${log}`));
        function finish(error?: Error, line?: string) {
          clearTimeout(timer);
          waiters.delete(onLine);
          child.off('exit', onExit);
          if (error) reject(error);
          else resolveLine(line!);
        }
        waiters.add(onLine);
        child.once('exit', onExit);
      }),
    pin: () => {
      if (pinned) return;
      pinned = true;
      pinTree(child.pid!, cpus!);
    },
    stop: async (graceMs = 10_000) => {
      signalGroup(child, 'SIGTERM');
      const timer = setTimeout(() => signalGroup(child, 'SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
      // Workers of a cluster may outlive their primary by a moment.
      signalGroup(child, 'SIGKILL');
      running.delete(started);
    },
  };
  running.add(started);
  void exited.then(() => running.delete(started));
  return started;
}

/** `node [nodeFlags] --import tsx <entry> ...args`, the way the platform's own services run. */
export function nodeCommand(entry: string, options: { nodeFlags?: readonly string[]; args?: readonly string[] } = {}): string[] {
  return [process.execPath, ...(options.nodeFlags ?? []), '--import', 'tsx', resolve(ROOT, entry), ...(options.args ?? [])];
}

/** {@link spawnProcess} of `node [nodeArgs] --import tsx <entry>`. */
export function spawnNode(name: string, entry: string, options: SpawnOptions & { nodeArgs?: readonly string[] } = {}): BenchChild {
  return spawnProcess(name, nodeCommand(entry, { nodeFlags: options.nodeArgs }), options);
}

/** Stops everything this module started that is still running. */
export async function stopAll(): Promise<void> {
  await Promise.all([...running].map((started) => started.stop()));
}

/** Polls until `probe` answers true, then pins `child`; fails with its output if it exits or the time runs out. */
export async function waitUntil(what: string, probe: () => Promise<boolean>, child?: BenchChild, timeoutMs = 90_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child && (child.child.exitCode !== null || child.child.signalCode !== null)) {
      throw new Error(`${child.name} exited with ${child.child.exitCode ?? child.child.signalCode}:\n${child.output()}`);
    }
    if (await probe().catch(() => false)) {
      child?.pin();
      return;
    }
    await sleep(100);
  }
  throw new Error(`${what} was not ready within ${timeoutMs} ms${child ? `:\n${child.output()}` : ''}`);
}

/** Polls `url` until it answers 200, then pins `child`. */
export function waitForHealthy(url: string, child: BenchChild, timeoutMs = 90_000): Promise<void> {
  return waitUntil(
    `${child.name} at ${url}`,
    async () => {
      const response = await fetch(url, { signal: AbortSignal.timeout(1000) });
      await response.body?.cancel();
      return response.ok;
    },
    child,
    timeoutMs,
  );
}

/** The pid and every descendant of it (cluster workers, a CLI's child). */
export function processTree(rootPid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // The command name may hold spaces and parentheses: the fields after the last ')' are fixed.
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(entry));
      children.set(ppid, list);
    } catch {
      // exited meanwhile
    }
  }
  const tree = [rootPid];
  for (let i = 0; i < tree.length; i++) tree.push(...(children.get(tree[i]) ?? []));
  return tree;
}

/** Moves every thread of `rootPid` and of its descendants to `cpus` (threads they start later inherit it). */
export function pinTree(rootPid: number, cpus: string): void {
  for (const pid of processTree(rootPid)) {
    try {
      execFileSync('taskset', ['-a', '-p', '-c', cpus, String(pid)], { stdio: 'ignore' });
    } catch {
      // exited meanwhile
    }
  }
}

/**
 * Moves this process (all its threads) to `cpus` and returns how to move it back, so that the
 * runner's own work (sampling, reading child output) stays off the cores under test.
 */
export function pinSelf(cpus: string | null | undefined): () => void {
  if (!cpus) return () => {};
  try {
    const mask = /affinity mask:\s*([0-9a-f]+)/i.exec(execFileSync('taskset', ['-p', String(process.pid)], { encoding: 'utf8' }))?.[1];
    execFileSync('taskset', ['-a', '-p', '-c', cpus, String(process.pid)], { stdio: 'ignore' });
    return () => {
      if (mask) execFileSync('taskset', ['-a', '-p', mask, String(process.pid)], { stdio: 'ignore' });
    };
  } catch {
    return () => {};
  }
}

/** The cores of a `taskset -c` list ("0", "0-2", "0,3"). */
export function coresOf(cpus: string): number[] {
  const cores: number[] = [];
  for (const part of cpus.split(',')) {
    const [from, to] = part.split('-').map(Number);
    for (let core = from; core <= (to ?? from); core++) cores.push(core);
  }
  return cores;
}

/** Busy and total jiffies of these cores so far (/proc/stat), to tell how busy they were over a window. */
export function coreTicks(cores: readonly number[]): { busy: number; total: number } {
  let busy = 0;
  let total = 0;
  for (const line of readFileSync('/proc/stat', 'utf8').split('\n')) {
    const match = /^cpu(\d+) (.*)$/.exec(line);
    if (!match || !cores.includes(Number(match[1]))) continue;
    const fields = match[2].trim().split(/\s+/).map(Number);
    const sum = fields.reduce((a, b) => a + b, 0);
    // idle and iowait are the 4th and 5th fields.
    busy += sum - fields[3] - (fields[4] ?? 0);
    total += sum;
  }
  return { busy, total };
}

const TICKS_PER_SECOND = 100; // USER_HZ on Linux

/** User plus system CPU ticks of a process so far; null once it is gone. */
export function ticksOf(pid: number): number | null {
  try {
    // After the command name (in parentheses, may hold spaces): utime and stime are fields 14 and 15.
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const after = fields.slice(fields.lastIndexOf(')') + 2).split(' ');
    return Number(after[11]) + Number(after[12]);
  } catch {
    return null;
  }
}

/** User plus system CPU time of these processes so far, in ms (0 for those gone). */
export function cpuMs(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of pids) ticks += ticksOf(pid) ?? 0;
  return (ticks * 1000) / TICKS_PER_SECOND;
}

/** CPU seconds (user + system) a process has used; null once it is gone. */
export function cpuSecondsOf(pid: number): number | null {
  const ticks = ticksOf(pid);
  return ticks === null ? null : ticks / TICKS_PER_SECOND;
}

/** Resident memory of these processes together, in bytes (0 for those gone). */
export function residentBytes(pids: readonly number[]): number {
  let total = 0;
  for (const pid of pids) {
    const rssMb = memoryOf(pid)?.rssMb;
    if (rssMb !== undefined && Number.isFinite(rssMb)) total += rssMb * 2 ** 20;
  }
  return total;
}

/** VmRSS and VmHWM (peak) of a process in MiB, from /proc; null once it is gone. */
export function memoryOf(pid: number): { rssMb: number; peakMb: number } | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
    return { rssMb: kb('VmRSS') / 1024, peakMb: kb('VmHWM') / 1024 };
  } catch {
    return null;
  }
}

/**
 * Milliseconds the process's main thread (where JavaScript runs) spent runnable but waiting for a
 * CPU, from /proc/<pid>/schedstat: how much other work on the same cores delayed it. Null once it
 * is gone.
 */
export function cpuWaitMsOf(pid: number): number | null {
  try {
    return Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[1]) / 1e6;
  } catch {
    return null;
  }
}
