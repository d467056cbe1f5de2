/**
 * Child processes of the subscriptions benchmark: pinned with `taskset` when the runner can pin,
 * with the file-descriptor limit raised to the hard limit (10,000 sockets per process), an IPC
 * channel for the load scripts, and their output kept for failure reports.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { resolve } from 'node:path';
import { Redis } from 'ioredis';

export const ROOT = resolve(new URL('../..', import.meta.url).pathname);

export interface Child {
  name: string;
  child: ChildProcess;
  /** The node process's pid (taskset and the shell exec it, so it is the child's own). */
  pid: number;
  output: () => string;
  exited: Promise<number | null>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once it has exited. */
  stop: (graceMs?: number) => Promise<void>;
}

export interface SpawnOptions {
  /** `taskset -c` list; unpinned when null. */
  cpus: string | null;
  env: Record<string, string>;
  /** Flags before `--import tsx` (`--cpu-prof`, `--max-old-space-size=…`). */
  nodeArgs?: string[];
  /** Open an IPC channel (process.send in the child). */
  ipc?: boolean;
  /** Also append the output to this file (e.g. `--trace-gc` lines). */
  logFile?: string;
}

/**
 * `node [nodeArgs] --import tsx <entry>` under `sh -c 'ulimit -n <hard>; exec taskset …'`: every
 * process of the benchmark may hold one socket per subscriber.
 */
export function spawnNode(name: string, entry: string, options: SpawnOptions): Child {
  const node = [process.execPath, ...(options.nodeArgs ?? []), '--import', 'tsx', resolve(ROOT, entry)];
  const command = options.cpus ? ['taskset', '-c', options.cpus, ...node] : node;
  const child = spawn('sh', ['-c', 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"', 'sh', ...command], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', NODE_ENV: 'production', ...options.env },
    stdio: options.ipc ? ['ignore', 'pipe', 'pipe', 'ipc'] : ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  const keep = (chunk: Buffer) => {
    log = (log + chunk.toString()).slice(-20_000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  if (options.logFile) {
    const file = createWriteStream(options.logFile, { flags: 'a' });
    child.stdout!.pipe(file);
    child.stderr!.pipe(file);
  }
  const exited = new Promise<number | null>((done) => child.once('exit', (code, signal) => done(code ?? (signal ? 128 : null))));
  return {
    name,
    child,
    pid: child.pid!,
    output: () => log,
    exited,
    stop: async (graceMs = 10_000) => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
        await exited;
        clearTimeout(timer);
      }
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
      await response.body?.cancel();
      if (response.ok) return;
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  throw new Error(`${service.name} was not healthy at ${url} within ${timeoutMs} ms:\n${service.output()}`);
}

/** A free TCP port on 127.0.0.1 (never one of the platform's own 8000-8004). */
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

export function sleep(ms: number): Promise<void> {
  return new Promise((done) => setTimeout(done, ms));
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

/** CPU seconds (user + system) a process has used, from /proc; null once it is gone. */
export function cpuSecondsOf(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // After the command name (in parentheses, may hold spaces): utime and stime are fields 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
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

/** Deletes every key under each prefix (best effort: they expire anyway). */
export async function deleteRedisKeys(url: string, prefixes: string[]): Promise<void> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    for (const prefix of prefixes) {
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
        cursor = next;
        if (keys.length > 0) await redis.unlink(...keys);
      } while (cursor !== '0');
    }
  } catch {
    // best effort
  } finally {
    redis.disconnect();
  }
}

/** Sends a request over a child's IPC channel and resolves with its reply (matched by `seq`). */
export class IpcPeer {
  private seq = 0;
  private readonly waiting = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();

  constructor(private readonly process: Child) {
    process.child.on('message', (message: { seq?: number; error?: string; result?: unknown }) => {
      const pending = message.seq === undefined ? undefined : this.waiting.get(message.seq);
      if (!pending) return;
      this.waiting.delete(message.seq!);
      if (message.error) pending.reject(new Error(`${process.name}: ${message.error}`));
      else pending.resolve(message.result);
    });
    void process.exited.then((code) => {
      for (const pending of this.waiting.values()) pending.reject(new Error(`${process.name} exited with ${code}:\n${process.output().slice(-3000)}`));
      this.waiting.clear();
    });
  }

  request<T>(command: Record<string, unknown>, timeoutMs = 120_000): Promise<T> {
    const seq = ++this.seq;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(seq);
        reject(new Error(`${this.process.name} did not answer ${String(command.cmd)} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.set(seq, {
        resolve: (value) => {
          clearTimeout(timer);
          resolve(value as T);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      this.process.child.send({ ...command, seq });
    });
  }
}

/** The child side of {@link IpcPeer}: answers each request with the handler's result or error. */
export function serveIpc(handle: (command: { cmd: string } & Record<string, unknown>) => Promise<unknown>): void {
  if (!process.send) throw new Error('This script runs as a child of the subscriptions benchmark (it needs an IPC channel).');
  process.on('message', (message: { cmd: string; seq: number } & Record<string, unknown>) => {
    handle(message).then(
      (result) => process.send!({ seq: message.seq, result }),
      (error: unknown) => process.send!({ seq: message.seq, error: error instanceof Error ? (error.stack ?? error.message) : String(error) }),
    );
  });
  // The parent going away (or closing the channel) ends the child.
  process.on('disconnect', () => process.exit(0));
}
