import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { signUp } from '../../support/client.js';
import { startPlatform, type Platform, type PlatformOptions, type RouterProcess } from '../../support/platform.js';
import type { ServiceProcess } from '../../support/processes.js';

/**
 * The platform as the reliability scenarios run it: two routers, the four subgraphs and three task
 * workers as separate processes on the machine's PostgreSQL, Redis and RabbitMQ, with a database,
 * a key prefix and a vhost of its own, a short task lease (the reaper acts within seconds) and
 * rate limits out of the way of the load. `db` reads every service's schema directly, to check
 * what the API promises against what is stored.
 */
export interface Cluster {
  platform: Platform;
  /** Superuser pool on the scenario's database (the checks; never used by the services). */
  db: pg.Pool;
  /** A signed-up user with an agent on the echo provider. */
  user: ClusterUser;
  /** The routers still running. */
  liveRouters: () => RouterProcess[];
  /** The workers still running. */
  liveWorkers: () => { workerId: string; process: ServiceProcess }[];
  stop: () => Promise<void>;
}

export interface ClusterUser {
  id: string;
  accessToken: string;
  echoAgentId: string;
}

export interface ClusterOptions extends Omit<PlatformOptions, 'workers' | 'routers'> {
  /** @default 2 */
  routers?: number;
  /** @default 3 */
  workers?: number;
}

export const TASK_LEASE_MS = 2000;

export async function startCluster(label: string, options: ClusterOptions = {}): Promise<Cluster> {
  const started = Date.now();
  const platform = await startPlatform(label, {
    ...options,
    routers: options.routers ?? 2,
    workers: options.workers ?? 3,
    rabbitmq: true,
    env: {
      RATE_LIMIT_PER_MINUTE: '100000',
      RATE_LIMIT_ANON_PER_MINUTE: '100000',
      RATE_LIMIT_AUTH_PER_MINUTE: '100000',
      ECHO_TOKEN_DELAY_MS: '30',
      TASK_LEASE_MS: String(TASK_LEASE_MS),
      TASK_MAX_ATTEMPTS: '5',
      ...options.env,
    },
  });
  const db = new pg.Pool({ connectionString: platform.env.DATABASE_URL, max: 3 });
  // A scenario that terminates connections must not crash the test process through an idle client.
  db.on('error', () => undefined);
  try {
    const signedUp = await signUp(platform.url, `faults-${randomUUID().slice(0, 8)}@example.com`);
    const agent = await signedUp.client.data(`mutation ($i: CreateAgentInput!) { createAgent(input: $i) { id } }`, {
      i: { name: 'Echo', provider: 'echo', model: 'echo-1' },
    });
    const alive = (p: ServiceProcess) => p.child.exitCode === null && p.child.signalCode === null;
    console.log(`[${label}] platform up in ${Date.now() - started} ms: ${platform.routers.length} routers, 4 subgraphs, ${platform.workers.length} workers`);
    return {
      platform,
      db,
      user: { id: signedUp.user.id, accessToken: signedUp.accessToken, echoAgentId: agent.createAgent.id },
      liveRouters: () => platform.routers.filter((r) => alive(r.process)),
      liveWorkers: () => platform.workers.filter((w) => alive(w.process)),
      stop: async () => {
        await db.end().catch(() => undefined);
        await platform.stop();
      },
    };
  } catch (error) {
    await db.end().catch(() => undefined);
    await platform.stop();
    throw error;
  }
}

/** Polls until `check` returns true (or a value), or throws with `what` after `timeoutMs`. */
export async function waitFor<T>(what: string, check: () => Promise<T | false | undefined | null>, timeoutMs = 60_000, everyMs = 250): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}${lastError ? ` (last error: ${String(lastError)})` : ''}`);
    await sleep(everyMs);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
