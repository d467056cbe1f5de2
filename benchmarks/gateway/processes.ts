/**
 * Child processes of the gateway benchmark: started pinned to cores (`taskset -c`), each in its
 * own process group so that a stop reaches its workers too, and all stopped when the benchmark
 * ends — normally, on failure, or when the runner itself exits.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { resolve } from 'node:path';

export const ROOT = resolve(new URL('../..', import.meta.url).pathname);

export interface BenchProcess {
  name: string;
  child: ChildProcess;
  /** The last 20 KB of stdout and stderr. */
  output(): string;
  /** Resolves with the first stdout line that `match` accepts (or rejects when the process exits first). */
  line(match: (line: string) => boolean, timeoutMs?: number): Promise<string>;
  /** SIGTERM to the group, SIGKILL after `graceMs`; resolves once the process has exited. */
  stop(graceMs?: number): Promise<void>;
}

const running = new Set<BenchProcess>();

// A runner that dies anyway must not leave servers holding ports and cores.
process.once('exit', () => {
  for (const started of running) killGroup(started.child, 'SIGKILL');
});

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
}

/** Starts `command` (argv) pinned to `cpus` when given. Output is kept, not printed. */
export function startProcess(name: string, command: string[], options: { cpus?: string; env?: Record<string, string>; stdin?: boolean } = {}): BenchProcess {
  const argv = options.cpus ? ['taskset', '-c', options.cpus, ...command] : command;
  const child = spawn(argv[0], argv.slice(1), {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...options.env },
    stdio: [options.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let log = '';
  let pending = '';
  const waiters = new Set<(line: string) => void>();
  child.stdout!.on('data', (chunk: Buffer) => {
    const text = chunk.toString();
    log = (log + text).slice(-20_000);
    pending += text;
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) for (const waiter of waiters) waiter(line);
  });
  child.stderr!.on('data', (chunk: Buffer) => {
    log = (log + chunk.toString()).slice(-20_000);
  });
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  const started: BenchProcess = {
    name,
    child,
    output: () => log,
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
    stop: async (graceMs = 5000) => {
      killGroup(child, 'SIGTERM');
      const timer = setTimeout(() => killGroup(child, 'SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
      // Workers of a cluster may outlive their primary by a moment.
      killGroup(child, 'SIGKILL');
      running.delete(started);
    },
  };
  running.add(started);
  return started;
}

/** `node --import tsx <entry> ...args`, the way the platform's own services run. */
export function nodeCommand(entry: string, options: { nodeFlags?: readonly string[]; args?: readonly string[] } = {}): string[] {
  return [process.execPath, ...(options.nodeFlags ?? []), '--import', 'tsx', resolve(ROOT, entry), ...(options.args ?? [])];
}

/** Stops everything this module started that is still running. */
export async function stopAll(): Promise<void> {
  await Promise.all([...running].map((started) => started.stop()));
}

/** A free TCP port on 127.0.0.1, never one of the platform's own 8000-8004. */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => (port >= 8000 && port <= 8004 ? freePort().then(resolvePort, reject) : resolvePort(port)));
    });
  });
}

/** Polls until `probe` answers true, or fails with the process's output. */
export async function waitUntil(what: string, probe: () => Promise<boolean>, process?: BenchProcess, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (process && process.child.exitCode !== null) throw new Error(`${process.name} exited with ${process.child.exitCode}:\n${process.output()}`);
    if (await probe().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} was not ready within ${timeoutMs} ms${process ? `:\n${process.output()}` : ''}`);
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

/** Resident memory of these processes together, in bytes (0 for those gone). */
export function residentBytes(pids: readonly number[]): number {
  let total = 0;
  for (const pid of pids) {
    try {
      const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (match) total += Number(match[1]) * 1024;
    } catch {
      // exited
    }
  }
  return total;
}

const TICKS_PER_SECOND = 100;

/** User plus system CPU time of these processes so far, in ms (USER_HZ is 100 on Linux). */
export function cpuMs(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // utime and stime are fields 14 and 15 of stat; the slice starts at field 3.
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // exited
    }
  }
  return (ticks * 1000) / TICKS_PER_SECOND;
}

/**
 * Moves this process (all its threads) to `cpus` and returns how to move it back, so that the
 * runner's own work (sampling, reading child output) stays off the cores under test.
 */
export function pinSelf(cpus: string | undefined): () => void {
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
