import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * How long our servers keep an idle keep-alive connection: longer than the pools of their clients
 * (the router's subgraph fetcher drops idle sockets after 30 s, fetch/undici after 4 s) and than
 * the 60 s of common load balancers. Whoever closes an idle connection must be the client: when the
 * server does (Node's default is 5 s), a request the client sends on that socket at the same moment
 * fails with ECONNRESET, which the router then answers as SERVICE_UNAVAILABLE.
 */
export const SERVER_KEEP_ALIVE_MS = 65_000;

/** Listens and resolves with the bound port (0 picks a free one). */
export function listen(server: Server, port: number, host: string): Promise<number> {
  server.keepAliveTimeout = SERVER_KEEP_ALIVE_MS;
  // Above keepAliveTimeout, as Node requires for a request that arrives at the end of the idle time.
  server.headersTimeout = SERVER_KEEP_ALIVE_MS + 1000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

/**
 * Runs async cleanups on SIGINT/SIGTERM once, then exits; a cleanup that hangs past `graceMs` does
 * not keep the process alive (an orchestrator would SIGKILL it anyway, losing the log line).
 */
export function exitOnSignals(
  log: { info: (msg: string) => void; error: (obj: unknown, msg: string) => void },
  cleanup: () => Promise<void>,
  graceMs = 25_000,
): void {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info(`${signal} received, shutting down`);
    setTimeout(() => {
      log.error({ graceMs }, 'shutdown took too long; exiting');
      process.exit(1);
    }, graceMs).unref();
    cleanup().then(
      () => process.exit(0),
      (error) => {
        log.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
}
