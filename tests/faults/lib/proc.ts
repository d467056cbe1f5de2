import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

/** Figures of a running process on Linux, read from /proc. */

/** Resident set size in KiB (VmRSS of /proc/<pid>/status). */
export function rssKib(pid: number): number {
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!match) throw new Error(`no VmRSS for process ${pid}`);
  return Number(match[1]);
}

export const rssMib = (pid: number): number => Math.round((rssKib(pid) / 1024) * 10) / 10;

/** Open file descriptors, and how many of them are sockets (TCP, Unix, WebSocket clients...). */
export function openDescriptors(pid: number): { fds: number; sockets: number } {
  let fds = 0;
  let sockets = 0;
  for (const entry of readdirSync(`/proc/${pid}/fd`)) {
    fds += 1;
    try {
      if (readlinkSync(`/proc/${pid}/fd/${entry}`).startsWith('socket:')) sockets += 1;
    } catch {
      // closed between readdir and readlink
    }
  }
  return { fds, sockets };
}

export function mean(values: number[]): number {
  return values.length === 0 ? 0 : values.reduce((sum, value) => sum + value, 0) / values.length;
}

/**
 * Error lines (pino level ≥ 50) each service process logged, to explain a masked
 * INTERNAL_SERVER_ERROR in a failure message. `output()` keeps the last 20 KB of each process.
 */
export function errorLogs(processes: { name: string; output: () => string }[], maxLines = 10): string {
  const lines: string[] = [];
  for (const p of processes) {
    for (const line of p.output().split('\n')) {
      const level = /"level":(\d+)/.exec(line)?.[1];
      if (level && Number(level) >= 50) lines.push(`${p.name}: ${line.slice(0, 600)}`);
    }
  }
  return lines.slice(-maxLines).join('\n');
}

/**
 * The RSS (MiB) a process settles to once idle: sampled every 500 ms for `forMs`, the lowest value.
 * One sample right after a burst depends on where the garbage collector happens to be; V8 shrinks
 * the heap within seconds of the allocation rate dropping.
 */
export async function settledRssMib(pid: number, forMs = 6000): Promise<number> {
  let lowest = rssMib(pid);
  for (let waited = 0; waited < forMs; waited += 500) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    lowest = Math.min(lowest, rssMib(pid));
  }
  return lowest;
}
