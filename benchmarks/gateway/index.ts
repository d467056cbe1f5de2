/**
 * Gateway benchmark: our router against a bare @apollo/gateway and Hive Gateway (--jit), on the
 * public federation gateway benchmark workload (four static subgraphs, one heavy query), then on
 * our own supergraph (the four real subgraphs on a fresh database).
 *
 * Each contender runs as its own process(es), all pinned to the same cores (`cpus.sut`); the load
 * generator (autocannon, 50 connections) and the subgraphs run on `cpus.load`. Contenders are
 * measured in turns, several windows each in the full run, and every figure is from one run.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import jwt from 'jsonwebtoken';
import { generateJwtKeyPair, JWT_ALGORITHM } from '../../lib/jwt-keys.js';
import { SCOPES, signPrincipalProof, PRINCIPAL_HEADER } from '../../lib/principal.js';
import type { BenchOptions, Section, SectionResult } from '../types.js';
import { CONTENDER_IDS, startContender, type ContenderId, type ContenderSetup, type RouterSetup, type RunningContender } from './contenders.js';
import { OWN_QUERY, seed, startOwnSubgraphs, type OwnSubgraphs } from './own/platform.js';
import { ALL_CORES, coresOf, coreTicks, nodeCommand, pinSelf, spawnProcess, stopAll, type BenchChild } from '../support/processes.js';
import { PUBLIC_SUBGRAPHS, type PublicSubgraphName } from './public/subgraphs.js';
import { composePublicSupergraph, HEAVY_QUERY } from './public/workload.js';
import { LoadGenerator } from './load.js';
import { runSuite, type SubgraphTraffic, type SuiteOutcome, type SuiteSettings } from './suite.js';

const FULL = {
  public: { connections: 50, primeRequests: 0, primeMaxSeconds: 0, warmupRequests: 500, warmupMaxSeconds: 10, seconds: 8, rounds: 2, trafficSamples: 10 },
  own: { connections: 50, primeRequests: 600, primeMaxSeconds: 15, warmupRequests: 100, warmupMaxSeconds: 5, seconds: 6, rounds: 2, trafficSamples: 10 },
} satisfies Record<string, SuiteSettings>;
const QUICK = {
  public: { connections: 50, primeRequests: 0, primeMaxSeconds: 0, warmupRequests: 100, warmupMaxSeconds: 2, seconds: 2, rounds: 1, trafficSamples: 3 },
  own: { connections: 50, primeRequests: 200, primeMaxSeconds: 3, warmupRequests: 50, warmupMaxSeconds: 1, seconds: 2, rounds: 1, trafficSamples: 3 },
} satisfies Record<string, SuiteSettings>;

/** Far above what one run sends, so that the limit never refuses but is counted on every request. */
const HIGH_RATE_LIMIT = '100000000';
/**
 * The heavy query's estimated cost is far above the default MAX_COST (its lists have no `first`,
 * so each counts as DEFAULT_LIST_SIZE): raised so that it passes while still being measured.
 */
const HIGH_MAX_COST = '100000000';

type Figures = SectionResult['figures'];
type Notes = SectionResult['notes'];
type Row = SectionResult['table'][number];

const round1 = (value: number) => Math.round(value * 10) / 10;

function signAccessToken(privateKey: string, userId: string): string {
  return jwt.sign({}, privateKey, { algorithm: JWT_ALGORITHM, subject: userId, issuer: 'agent-platform', audience: 'agent-platform-api', expiresIn: 3600 });
}

/** Figures of one suite under `prefix`, rows for the table, notes. */
function report(outcome: SuiteOutcome, prefix: string, cores: number, figures: Figures, notes: Notes, rows: Row[]): void {
  for (const { id, label, window, note, traffic } of outcome.contenders) {
    const key = `${prefix}${id}`;
    if (note) notes[`${key}_rps`] = note;
    if (traffic) {
      figures[`${key}_subgraph_fetches_per_request`] = round1(traffic.requests);
      figures[`${key}_subgraph_kb_per_request`] = round1((traffic.bytesIn + traffic.bytesOut) / 1024);
    }
    const empty = window !== null && window.requests === 0;
    if (!window || empty) {
      for (const suffix of ['rps', 'p50_ms', 'p95_ms', 'p99_ms', 'rss_mb', 'errors', 'cpu_ms_per_request', 'foreign_cpu_pct']) figures[`${key}_${suffix}`] = null;
      const why = empty
        ? `no answer completed within the ${window.seconds.toFixed(1)} s window: under this load an answer takes longer than that (the full run's longer windows measure it)`
        : (note ?? 'not measured');
      if (empty) notes[`${key}_rps`] = [note, why].filter(Boolean).join('; ');
      rows.push([`${label}`, 'n/a', why]);
      continue;
    }
    const rps = window.requests / window.seconds;
    const failed = window.errors + window.non2xx + window.graphqlErrors;
    figures[`${key}_rps`] = round1(rps);
    figures[`${key}_p50_ms`] = round1(window.p50Ms);
    figures[`${key}_p95_ms`] = round1(window.p95Ms);
    figures[`${key}_p99_ms`] = round1(window.p99Ms);
    figures[`${key}_rss_mb`] = round1(window.peakRssBytes / 2 ** 20);
    figures[`${key}_errors`] = failed;
    figures[`${key}_cpu_ms_per_request`] = window.requests > 0 ? Math.round((window.cpuMs / window.requests) * 100) / 100 : null;
    const foreign = Math.round((window.foreignCpuMs / (window.seconds * 1000 * cores)) * 100);
    figures[`${key}_foreign_cpu_pct`] = foreign;
    rows.push([
      label,
      `${rps.toFixed(1)} RPS`,
      `p50/p95/p99 ${window.p50Ms.toFixed(0)}/${window.p95Ms.toFixed(0)}/${window.p99Ms.toFixed(0)} ms, ` +
        `peak RSS ${(window.peakRssBytes / 2 ** 20).toFixed(0)} MB, ${figures[`${key}_cpu_ms_per_request`]} CPU ms/req, ` +
        `errors ${failed}, other work on its cores ${foreign}%` +
        (traffic ? `; alone: ${round1(traffic.requests)} subgraph fetches, ${round1((traffic.bytesIn + traffic.bytesOut) / 1024)} KB to and from subgraphs` : '') +
        (note ? ` (${note})` : ''),
    ]);
  }
  const ratio = (a: string, b: string, key: string, label: string) => {
    const x = figures[`${prefix}${a}_rps`];
    const y = figures[`${prefix}${b}_rps`];
    figures[`${prefix}${key}`] = typeof x === 'number' && typeof y === 'number' && y > 0 ? Math.round((x / y) * 100) / 100 : null;
    rows.push([label, figures[`${prefix}${key}`] === null ? 'n/a' : `${figures[`${prefix}${key}`]}×`, 'RPS ratio']);
  };
  ratio('router_auth', 'apollo_gateway', 'router_auth_vs_apollo_gateway', 'router with auth+limits ÷ bare @apollo/gateway');
  ratio('router', 'hive_gateway', 'router_vs_hive_gateway', 'router ÷ Hive Gateway --jit');
}

async function startAll(setup: ContenderSetup, router: RouterSetup, log: (line: string) => void, what: string, ids = CONTENDER_IDS): Promise<RunningContender[]> {
  // Started together (their start-up is not measured); on failure the section's stopAll ends the others.
  const started = Date.now();
  return Promise.all(
    ids.map(async (id) => {
      const contender = await startContender(id, setup, router);
      log(`gateway: ${id} answers (${what}) after ${((Date.now() - started) / 1000).toFixed(1)} s`);
      return contender;
    }),
  );
}

/** A workload whose contenders are up and answering, ready to be measured. */
export interface Prepared {
  contenders: RunningContender[];
  body: string;
  /** What the table says about the workload, after the answer size. */
  caption: string;
  /** Stops what is not a process (a database). */
  cleanup: () => Promise<void>;
  /** The subgraphs' request and byte counters, summed (public workload only). */
  traffic?: () => Promise<SubgraphTraffic>;
}

/**
 * Starts the public workload's subgraphs and the contenders `ids` over them, with `nodeFlags`
 * (profiling).
 */
export async function preparePublic(
  options: BenchOptions,
  dir: string,
  processes: number,
  ids: readonly ContenderId[] = CONTENDER_IDS,
  nodeFlags?: readonly string[],
): Promise<Prepared> {
  const subgraphs: BenchChild = spawnProcess('public subgraphs', nodeCommand('benchmarks/gateway/public/serve.ts'), { cpus: options.cpus?.load });
  const ready = await subgraphs.line((line) => line.startsWith('{"ready"'));
  subgraphs.pin();
  const ports = (JSON.parse(ready) as { ready: Record<PublicSubgraphName, number> }).ready;
  if (PUBLIC_SUBGRAPHS.some((name) => !ports[name])) throw new Error(`The public subgraphs did not all start: ${ready}`);
  const supergraphPath = join(dir, 'public-supergraph.graphql');
  writeFileSync(supergraphPath, composePublicSupergraph(ports));

  const keys = generateJwtKeyPair();
  const token = signAccessToken(keys.privateKey, 'bench-user');
  const router: RouterSetup = {
    internalSecret: 'bench-internal-secret-0123456789abcdef0123456789',
    jwtPublicKey: keys.publicKey,
    openEnv: { ALLOW_ANONYMOUS: 'true', RATE_LIMIT_ENABLED: 'false', OPERATION_LIMITS_ENABLED: 'false' },
    authEnv: { RATE_LIMIT_PER_MINUTE: HIGH_RATE_LIMIT, MAX_COST: HIGH_MAX_COST },
    openHeaders: {},
    authHeaders: { authorization: `Bearer ${token}` },
  };
  const contenders = await startAll({ supergraphPath, cpus: options.cpus?.sut, processes, nodeFlags }, router, options.log, 'public', ids);
  options.log('gateway: public workload ready');
  return {
    contenders,
    body: JSON.stringify({ query: HEAVY_QUERY }),
    caption: 'per answer; 16 subgraph fetches in Apollo\'s query plan',
    cleanup: async () => {},
    traffic: async () => {
      const counts = await Promise.all(
        PUBLIC_SUBGRAPHS.map(async (name) => (await (await fetch(`http://127.0.0.1:${ports[name]}/stats`)).json()) as SubgraphTraffic),
      );
      return counts.reduce((a, b) => ({ requests: a.requests + b.requests, bytesIn: a.bytesIn + b.bytesIn, bytesOut: a.bytesOut + b.bytesOut }));
    },
  };
}

export async function prepareOwn(options: BenchOptions, dir: string, processes: number): Promise<Prepared> {
  const keys = generateJwtKeyPair();
  const own: OwnSubgraphs = await startOwnSubgraphs(keys, options.cpus?.load);
  try {
    const supergraphPath = join(dir, 'own-supergraph.graphql');
    writeFileSync(supergraphPath, own.supergraphSdl);
    const router: RouterSetup = {
      internalSecret: own.internalSecret,
      jwtPublicKey: keys.publicKey,
      // Our subgraphs show an anonymous caller nothing, so (a) also sends the JWT; its limits are off.
      openEnv: { RATE_LIMIT_ENABLED: 'false', OPERATION_LIMITS_ENABLED: 'false' },
      authEnv: { RATE_LIMIT_PER_MINUTE: HIGH_RATE_LIMIT },
      openHeaders: {},
      authHeaders: {},
      env: own.routerEnv,
    };
    const subgraphHeadersFile = join(dir, 'own-subgraph-headers.json');
    const setup: ContenderSetup = { supergraphPath, cpus: options.cpus?.sut, processes, subgraphHeadersFile };
    // The contenders start while the subgraphs do (none fetches before the first query).
    const [[routerOpen, routerAuth, apollo, hive]] = await Promise.all([startAll(setup, router, options.log, 'own'), own.ready]);
    // The router with limits on seeds the data; the user it creates is who every contender reads as.
    const seeded = await seed(routerAuth.url);
    const bearer = { authorization: `Bearer ${seeded.accessToken}` };
    routerAuth.clientHeaders = bearer;
    routerOpen.clientHeaders = bearer;
    // The gateways that cannot sign our proof get one signed here, valid for the run, as a static header.
    const proof = signPrincipalProof({ kind: 'user', userId: seeded.userId, scopes: [...SCOPES] }, own.internalSecret, 'bench-static-proof', 3600);
    writeFileSync(subgraphHeadersFile, JSON.stringify({ [PRINCIPAL_HEADER]: proof }));
    routerOpen.label = 'router, JWT, limits off';
    options.log('gateway: our supergraph ready');
    return {
      contenders: [routerOpen, routerAuth, apollo, hive],
      body: JSON.stringify({ query: OWN_QUERY }),
      caption: `per answer; ${seeded.agents} agents, ${seeded.sessions} sessions, ${seeded.messages} messages, ${seeded.tasks} tasks of one user`,
      cleanup: own.stop,
    };
  } catch (error) {
    await own.stop();
    throw error;
  }
}

export const run: Section = async (options) => {
  const started = Date.now();
  const log = (line: string) => options.log(`${line} (${Math.round((Date.now() - started) / 1000)} s)`);
  const settings = options.quick ? QUICK : FULL;
  const figures: Figures = {};
  const notes: Notes = {};
  const table: Row[] = [];
  const processes = options.cpus ? coresOf(options.cpus.sut).length : 1;
  const dir = mkdtempSync(join(tmpdir(), 'bench-gateway-'));
  const unpin = pinSelf(options.cpus?.load);
  notes.setup =
    `${processes} process(es) per contender on cores ${options.cpus?.sut ?? 'unpinned'}; load generator, subgraphs and this runner on ${options.cpus?.load ?? 'unpinned'}; ` +
    `autocannon, ${settings.public.connections} connections; windows taken in turns, ${settings.public.rounds} × ${settings.public.seconds} s per contender (public), ` +
    `${settings.own.rounds} × ${settings.own.seconds} s (own), after a warm-up of ${settings.public.warmupRequests} (public) / ${settings.own.warmupRequests} (own) answers or ${settings.public.warmupMaxSeconds} / ${settings.own.warmupMaxSeconds} s. Everything is started before the first window; idle contenders wait on their cores. ` +
    `${processes > 1 ? 'Router processes share rate limits through the local Redis. ' : 'The rate limits of the router with limits on use its in-memory store (one process, no REDIS_URL). '}` +
    'cpu_ms_per_request: CPU time of the contender\'s processes per answer ' +
    '(steadier than RPS on a shared machine); foreign_cpu_pct: CPU time other processes took on the contender\'s cores during its windows, in % of those cores — ' +
    'a window with much of it measures the machine, not the contender. ' +
    'Hive Gateway shares identical query fetches in flight to a subgraph (its HTTP executor does by default), and so does our router (per caller, SHARE_INFLIGHT_FETCHES); ' +
    "Hive's inboundInflightRequestDeduplication (whole client requests shared, off by default, on in upstream's benchmark) stays off, as does anything alike in the others.";
  const cleanups: (() => Promise<void>)[] = [];
  const generator = new LoadGenerator(options.cpus?.load, options.cpus?.sut);
  try {
    log('gateway: starting the public workload, our subgraphs on a fresh database, and the contenders of both');
    const allCores = coresOf(ALL_CORES);
    const busyBefore = coreTicks(allCores);
    const [publicReady, ownReady] = await Promise.allSettled([preparePublic(options, dir, processes), prepareOwn(options, dir, processes)]);
    const busy = coreTicks(allCores);
    log(`gateway: everything started; the machine's cores were busy ${Math.round(((busy.busy - busyBefore.busy) / (busy.total - busyBefore.total)) * 100)}% of the time meanwhile`);
    if (ownReady.status === 'fulfilled') cleanups.push(ownReady.value.cleanup);

    const suites: [string, string, PromiseSettledResult<Prepared>, SuiteSettings][] = [
      ['', 'public workload, heavy query', publicReady, settings.public],
      ['own_', 'our supergraph, dashboard query', ownReady, settings.own],
    ];
    for (const [prefix, title, ready, suiteSettings] of suites) {
      if (ready.status === 'rejected') {
        const message = String((ready.reason as Error)?.message ?? ready.reason);
        for (const id of CONTENDER_IDS) figures[`${prefix}${id}_rps`] = null;
        notes[prefix ? 'own' : 'public'] = `failed to start: ${message.slice(0, 1000)}`;
        table.push([title, 'failed', message.slice(0, 200)]);
        continue;
      }
      log(`gateway: measuring the ${title}`);
      try {
        const outcome = await runSuite(ready.value.contenders, ready.value.body, suiteSettings, generator, log, ready.value.traffic);
        table.push([title, outcome.answerBytes === null ? '' : `${(outcome.answerBytes / 1024).toFixed(1)} KB`, ready.value.caption]);
        report(outcome, prefix, processes, figures, notes, table);
      } catch (error) {
        for (const id of CONTENDER_IDS) figures[`${prefix}${id}_rps`] = null;
        notes[prefix ? 'own' : 'public'] = `failed: ${(error as Error).message.slice(0, 1000)}`;
        table.push([title, 'failed', (error as Error).message.slice(0, 200)]);
      } finally {
        await Promise.all(ready.value.contenders.map((c) => c.process.stop()));
      }
    }
    if (ownReady.status === 'fulfilled') {
      notes.own_setup =
        'Our router (a) also sends the JWT (our subgraphs show anonymous callers nothing); its rate and operation limits are off. ' +
        'The bare gateway and Hive Gateway add a principal proof signed by the benchmark (signPrincipalProof, 1 h) as a static subgraph header ' +
        '(RemoteGraphQLDataSource.willSendRequest / propagateHeaders), since only the router can sign one per request.';
    }
  } finally {
    await generator.stop().catch(() => undefined);
    await stopAll();
    for (const cleanup of cleanups) await cleanup().catch((error: unknown) => options.log(`gateway: cleanup failed: ${String(error)}`));
    rmSync(dir, { recursive: true, force: true });
    unpin();
  }
  return { figures, notes, table };
};
