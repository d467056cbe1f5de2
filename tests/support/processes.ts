import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { resolve } from 'node:path';

export const ROOT = resolve(new URL('../..', import.meta.url).pathname);

/**
 * Ports handed out by this process. A port is free when probed but stays unused until the process
 * it is meant for binds it, so two calls in a row could otherwise get the same one: a subgraph
 * would then answer on the router's address.
 */
const handedOut = new Set<number>();

/**
 * Below the kernel's ephemeral range (32768-60999 here), so no outgoing connection takes it
 * meanwhile, and a slice of its own for each of vitest's concurrent workers (`VITEST_POOL_ID`,
 * 1..maxWorkers; 0 outside vitest), so two test files starting platforms side by side never pick
 * the same port between probing and binding it.
 */
const SLICE = 1_200;
const slot = Number(process.env.VITEST_POOL_ID ?? 0) % 10;
const PORT_RANGE = { from: 20_000 + slot * SLICE, to: 20_000 + (slot + 1) * SLICE };

/**
 * A free TCP port on 127.0.0.1 that this process has not handed out before (never one of the
 * platform's own 8000-8004). Chosen at random in this process's slice, then probed by binding it.
 */
export async function freePort(): Promise<number> {
  for (let tries = 0; tries < 1000; tries++) {
    const port = PORT_RANGE.from + Math.floor(Math.random() * (PORT_RANGE.to - PORT_RANGE.from));
    if (handedOut.has(port)) continue;
    if (await canListen(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error(`no free port between ${PORT_RANGE.from} and ${PORT_RANGE.to} after 1000 tries`);
}

function canListen(port: number): Promise<boolean> {
  return new Promise((done) => {
    const server = createServer();
    server.once('error', () => done(false));
    server.listen(port, '127.0.0.1', () => server.close(() => done(true)));
  });
}

export interface ServiceProcess {
  name: string;
  child: ChildProcess;
  output: () => string;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process has exited. */
  stop: (graceMs?: number) => Promise<number | null>;
}

/** Starts `node --import tsx <entry>` as its own process, with its output kept for failure reports. */
export function startProcess(name: string, entry: string, env: Record<string, string>): ServiceProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', resolve(ROOT, entry)], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', NODE_ENV: 'test', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  const keep = (chunk: Buffer) => {
    log = (log + chunk.toString()).slice(-20_000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
  return {
    name,
    child,
    output: () => log,
    stop: async (graceMs = 5000) => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
        const code = await exited;
        clearTimeout(timer);
        return code;
      }
      return exited;
    },
  };
}

/**
 * Polls `url` until it answers 200, or fails with the process's output. With `expectService`, the
 * probe's `service` field must name it: a ready answer from another process on that port fails.
 */
export async function waitForHealthy(url: string, service: ServiceProcess, timeoutMs = 30_000, expectService?: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (service.child.exitCode !== null) {
      throw new Error(`${service.name} exited with ${service.child.exitCode}:\n${service.output()}`);
    }
    let answeredBy: unknown;
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(1000) });
      if (response.ok) {
        if (expectService === undefined) return;
        answeredBy = ((await response.json()) as { service?: unknown }).service;
        if (answeredBy === expectService) return;
      }
    } catch {
      // not listening yet
    }
    if (answeredBy !== undefined) {
      throw new Error(`${url} is answered by "${String(answeredBy)}", not by ${service.name} ("${expectService}"): the port was taken`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${service.name} was not healthy at ${url} within ${timeoutMs} ms:\n${service.output()}`);
}
