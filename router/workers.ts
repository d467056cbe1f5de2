import cluster, { type Worker } from 'node:cluster';
import { once } from 'node:events';
import type { Logger } from 'pino';
import type { RunningServer } from '../lib/subgraph-server.js';

/**
 * `ROUTER_PROCESSES` > 1: this process forks that many routers (node:cluster workers, each running
 * router/main.ts again and listening on the same port) and only supervises them. A worker that
 * dies is replaced, at most once a second; close() stops them all and waits for each to drain.
 */
export async function startRouterWorkers(count: number, port: number, log: Logger): Promise<RunningServer> {
  let closing = false;
  let lastRestart = 0;
  const workers = new Set<Worker>();

  function fork(): Promise<void> {
    const worker = cluster.fork();
    workers.add(worker);
    worker.once('exit', (code, signal) => {
      workers.delete(worker);
      if (closing) return;
      log.error({ pid: worker.process.pid, code, signal }, 'router worker exited; starting another');
      const wait = Math.max(0, lastRestart + 1000 - Date.now());
      lastRestart = Date.now() + wait;
      setTimeout(() => {
        if (!closing) fork().catch((error: unknown) => log.error({ err: error }, 'router worker failed to start'));
      }, wait);
    });
    return new Promise((resolve, reject) => {
      worker.once('listening', () => resolve());
      worker.once('exit', (code) => reject(new Error(`A router worker exited with ${code} before it listened; its log says why.`)));
    });
  }

  try {
    await Promise.all(Array.from({ length: count }, fork));
  } catch (error) {
    closing = true;
    for (const worker of workers) worker.kill('SIGKILL');
    throw error;
  }
  log.info({ processes: count, port }, 'router workers ready');
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    close: async () => {
      closing = true;
      await Promise.all(
        [...workers].map(async (worker) => {
          const exited = once(worker, 'exit');
          worker.kill('SIGTERM');
          await exited;
        }),
      );
    },
  };
}
