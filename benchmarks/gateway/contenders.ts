/**
 * How each gateway is started. Every contender gets the same supergraph file, the same number of
 * processes on the same cores, NODE_ENV=production, and nothing tuned for one workload only.
 */
import { resolve } from 'node:path';
import { ROOT, freePort, nodeCommand, spawnProcess, waitUntil, type BenchChild } from '../support/processes.js';

export type ContenderId = 'router' | 'router_auth' | 'apollo_gateway' | 'hive_gateway';
export const CONTENDER_IDS: readonly ContenderId[] = ['router', 'router_auth', 'apollo_gateway', 'hive_gateway'];

export interface RunningContender {
  id: ContenderId;
  label: string;
  process: BenchChild;
  /** GraphQL endpoint. */
  url: string;
  /** Headers the load generator sends (the JWT for our router with auth on). */
  clientHeaders: Record<string, string>;
}

export interface ContenderSetup {
  supergraphPath: string;
  /** `taskset -c` cores, when pinning is possible. */
  cpus: string | undefined;
  /** Processes per contender (node:cluster workers / Hive's --fork). */
  processes: number;
  /**
   * A JSON file of headers the gateways that cannot sign our proof add to every subgraph fetch,
   * read at their first fetch (our own supergraph only; written once the data is seeded).
   */
  subgraphHeadersFile?: string;
  /** Extra node flags for every contender (`--cpu-prof` when profiling). */
  nodeFlags?: readonly string[];
}

/** Our router's environment for both of its contenders. */
export interface RouterSetup {
  internalSecret: string;
  jwtPublicKey: string;
  /** Environment for contender (a), "auth and limits off". */
  openEnv: Record<string, string>;
  /** Environment for contender (b), "valid JWT, rate and operation limits on". */
  authEnv: Record<string, string>;
  /** The JWT (b) is called with; (a) gets it too when `openEnv` cannot do without one. */
  authHeaders: Record<string, string>;
  openHeaders: Record<string, string>;
  /** Extra environment for both (subgraph URLs). */
  env?: Record<string, string>;
}

const HIVE_BIN = resolve(ROOT, 'node_modules/@graphql-hive/gateway/dist/bin.js');
const HIVE_CONFIG = resolve(ROOT, 'benchmarks/gateway/hive-gateway.config.ts');

const BASE_ENV: Record<string, string> = { NODE_ENV: 'production' };

async function graphqlAnswers(url: string, headers: Record<string, string>): Promise<boolean> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: '{"query":"{ __typename }"}',
    signal: AbortSignal.timeout(2000),
  });
  await response.body?.cancel();
  return response.ok;
}

function routerProcess(id: 'router' | 'router_auth', setup: ContenderSetup, router: RouterSetup, port: number): BenchChild {
  return spawnProcess(id, nodeCommand('router/main.ts', { nodeFlags: setup.nodeFlags }), {
    cpus: setup.cpus,
    env: {
      ...BASE_ENV,
      INTERNAL_SECRET: router.internalSecret,
      JWT_PUBLIC_KEY: router.jwtPublicKey,
      SUPERGRAPH_PATH: setup.supergraphPath,
      PORT: String(port),
      HOST: '127.0.0.1',
      ROUTER_PROCESSES: String(setup.processes),
      // Router processes share rate limits and task events through Redis (its keys expire within a minute).
      ...(setup.processes > 1 && {
        REDIS_URL: globalThis.process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379',
        RATE_LIMIT_PREFIX: `bench-gateway:${port}:rl:`,
        EVENTS_PREFIX: `bench-gateway:${port}:ev:`,
      }),
      ...router.env,
      ...(id === 'router' ? router.openEnv : router.authEnv),
    },
  });
}

/** Starts one contender on a free port and waits until it answers `{ __typename }`. */
export async function startContender(id: ContenderId, setup: ContenderSetup, router: RouterSetup): Promise<RunningContender> {
  const port = await freePort();
  const headersEnv: Record<string, string> = setup.subgraphHeadersFile ? { SUBGRAPH_HEADERS_FILE: setup.subgraphHeadersFile } : {};
  let process: BenchChild;
  let label: string;
  let clientHeaders: Record<string, string> = {};
  switch (id) {
    case 'router':
      process = routerProcess(id, setup, router, port);
      label = 'router, auth and limits off';
      clientHeaders = router.openHeaders;
      break;
    case 'router_auth':
      process = routerProcess(id, setup, router, port);
      label = 'router, JWT + rate and operation limits';
      clientHeaders = router.authHeaders;
      break;
    case 'apollo_gateway':
      process = spawnProcess(id, nodeCommand('benchmarks/gateway/apollo-gateway-main.ts', { nodeFlags: setup.nodeFlags }), {
        cpus: setup.cpus,
        env: { ...BASE_ENV, SUPERGRAPH_PATH: setup.supergraphPath, PORT: String(port), PROCESSES: String(setup.processes), ...headersEnv },
      });
      label = 'bare @apollo/gateway + @apollo/server';
      break;
    case 'hive_gateway':
      process = spawnProcess(
        id,
        [
          globalThis.process.execPath,
          ...(setup.nodeFlags ?? []),
          HIVE_BIN,
          'supergraph',
          setup.supergraphPath,
          '--jit',
          '--host',
          '127.0.0.1',
          '--port',
          String(port),
          '--fork',
          String(setup.processes),
          ...(setup.subgraphHeadersFile ? ['--config-path', HIVE_CONFIG] : []),
        ],
        { cpus: setup.cpus, env: { ...BASE_ENV, ...headersEnv } },
      );
      label = 'Hive Gateway --jit';
      break;
  }
  const url = `http://127.0.0.1:${port}/graphql`;
  await waitUntil(`${id} at ${url}`, () => graphqlAnswers(url, clientHeaders), process);
  return { id, label, process, url, clientHeaders };
}
