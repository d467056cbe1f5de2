/**
 * Subscriptions: N graphql-ws subscribers (10 per task) of `taskEvents` through one router process,
 * and the same subscribers on the bare machinery (graphql-ws + graphql-redis-subscriptions), with
 * the same publisher appending TOKEN events to the tasks' Redis event log. Measures deliveries/s,
 * append → receipt latency (p50/p99) at 1,000 deliveries/s over a long window, the most
 * deliveries/s with p99 under 50 ms (stepping the rate up, then bisecting once or twice), and the
 * server's peak RSS.
 *
 * Processes: the four subgraphs and the router (or the bare server) on the system-under-test
 * cores; the publisher and the load generator on the load core; PostgreSQL and Redis are the
 * machine's own (a fresh database and a random key prefix, removed at the end).
 *
 * Knobs (environment): BENCH_SUBSCRIBERS (default 1,000 quick / 10,000 full),
 * BENCH_SUBSCRIPTIONS_WINDOW_S (the 1,000/s window), BENCH_SUBSCRIPTIONS_NODE_ARGS (node flags
 * for the router and the bare server alike, instead of the router's deployment flags, {@link ROUTER_NODE_ARGS}),
 * BENCH_SUBSCRIPTIONS_CPU_PROF=<dir> (`--cpu-prof` both servers into <dir>),
 * BENCH_SUBSCRIPTIONS_CONTENDERS (`router,bare`; one of them alone while working on it),
 * BENCH_SUBSCRIPTIONS_RATES (deliveries/s to step through, comma-separated), BENCH_SUBSCRIPTIONS_STEP_S,
 * BENCH_SUBSCRIPTIONS_SERVER_LOG=<file> (the servers' output, e.g. with `--trace-gc`),
 * BENCH_SUBSCRIPTIONS_HEAP_SNAPSHOT=<seconds> (SIGUSR2 to each server once its subscribers are
 * connected, then wait; with NODE_ARGS `--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=<dir>`).
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import type { BenchOptions, Section, SectionResult } from '../types.js';
import type { LatencySummary } from './latency.js';
import type { ConnectResult, LoadGeneratorConfig, LoadStatus, WindowReport } from './load-generator.js';
import { cpuSecondsOf, cpuWaitMsOf, freePort, memoryOf, sleep, spawnNode, waitForHealthy, type BenchChild as Child } from '../support/processes.js';
import { sharedPlatform, ROUTER_NODE_ARGS, type BenchPlatform } from '../support/platform.js';
import { IpcPeer } from './processes.js';
import { REDIS_URL } from '../support/redis.js';
import type { PublisherConfig, PublishResult } from './publisher.js';

const PER_TASK = 10;
const P99_LIMIT_MS = 50;
const FEDERATED_SUBSCRIBERS = 100;
const REDIS_RESTARTED = 'Redis restarted during the window';
/** A window in which the server's main thread waited for a core this share of the time measured the machine's other work. */
const NOISY_WAIT = 0.2;
/**
 * Deliveries/s to try, in order, until p99 reaches the limit or deliveries fall behind (then the
 * gap is bisected). The quick form takes bigger steps and bisects once.
 */
const FULL_RATES = [1000, 2000, 5000, 10_000, 15_000, 20_000, 30_000, 40_000, 60_000];
const QUICK_RATES = [1000, 5000, 10_000, 20_000, 40_000, 60_000];

interface Settings {
  subscribers: number;
  tasks: number;
  sustainedMs: number;
  stepMs: number;
  federatedMs: number;
  /** Bisections between the last rate that held and the first that did not. */
  refinements: number;
  /** Deliveries/s to step through. */
  rates: number[];
  /** Tries of a step that failed, at most (the last only when the server waited for a core, see NOISY_WAIT). */
  attempts: number;
  /** A failed step is tried again only when its p99 was below this (ms): far over the limit is not noise. */
  retryBelowMs: number;
  connectConcurrency: number;
}

function settingsFor(quick: boolean): Settings {
  const subscribers = Number(process.env.BENCH_SUBSCRIBERS ?? (quick ? 1000 : 10_000));
  if (!Number.isSafeInteger(subscribers) || subscribers < PER_TASK || subscribers % PER_TASK !== 0) {
    throw new Error(`BENCH_SUBSCRIBERS must be a multiple of ${PER_TASK}, got ${process.env.BENCH_SUBSCRIBERS}.`);
  }
  const windowS = Number(process.env.BENCH_SUBSCRIPTIONS_WINDOW_S ?? (quick ? 4 : 60));
  return {
    subscribers,
    tasks: subscribers / PER_TASK,
    sustainedMs: windowS * 1000,
    stepMs: Number(process.env.BENCH_SUBSCRIPTIONS_STEP_S ?? (quick ? 1.5 : 2.5)) * 1000,
    federatedMs: quick ? 3000 : 6000,
    refinements: quick ? 1 : 2,
    rates: (process.env.BENCH_SUBSCRIPTIONS_RATES?.split(',').map(Number) ?? (quick ? QUICK_RATES : FULL_RATES)).filter((rate) => rate > 0),
    attempts: quick ? 2 : 3,
    retryBelowMs: quick ? 2 * P99_LIMIT_MS : Infinity,
    connectConcurrency: 100,
  };
}

/** One measured window: what was published, what arrived, how late, and what it cost. */
interface WindowFigures {
  /** Target deliveries/s. */
  rate: number;
  /** Deliveries received per second, from the first append to the last receipt. */
  deliveriesPerS: number;
  expected: number;
  received: number;
  latency: LatencySummary;
  federated: LatencySummary;
  /** Share of one core the server and the load generator used over the window. */
  serverCpu: number | null;
  loadCpu: number | null;
  /** Server CPU time per delivery (µs). */
  serverUsPerDelivery: number | null;
  /** Share of the window the server's main thread waited for a CPU that something else held. */
  serverCpuWait: number | null;
  /** Share of one core the other processes on the servers' cores (the subgraphs) used. */
  neighboursCpu: number | null;
  publisherSaturated: boolean;
  pass: boolean;
  why?: string;
}

interface ContenderFigures {
  connect: ConnectResult;
  sustained: WindowFigures;
  steps: WindowFigures[];
  maxDeliveriesPerS: number | null;
  /** Server CPU time per delivery in the fastest window that held (µs). */
  maxUsPerDelivery: number | null;
  maxNote?: string;
  federated?: WindowFigures;
  /** VmRSS right after every subscriber connected, peak VmRSS sampled, and VmHWM at the end. */
  rssConnectedMb: number | null;
  rssPeakMb: number | null;
  status: LoadStatus;
}

const round = (value: number | null | undefined, digits = 1): number | null => {
  if (value === null || value === undefined || !Number.isFinite(value)) return null;
  const f = 10 ** digits;
  return Math.round(value * f) / f;
};

async function graphql<T>(url: string, query: string, variables: Record<string, unknown>, token?: string): Promise<T> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await response.json()) as { data?: T; errors?: unknown[] };
  if (!response.ok || body.errors?.length || !body.data) throw new Error(`GraphQL request failed (${response.status}): ${JSON.stringify(body.errors ?? body)}`);
  return body.data;
}

/** Runs `tasks` functions with at most `concurrency` at once. */
async function pool<T>(count: number, concurrency: number, task: (index: number) => Promise<T>): Promise<T[]> {
  const results: T[] = new Array(count);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, count) }, async () => {
      while (next < count) {
        const index = next++;
        results[index] = await task(index);
      }
    }),
  );
  return results;
}

/** The router's side: a user, an echo agent and `count` QUEUED tasks (no worker runs them). */
async function createTasks(url: string, count: number, redis: Redis, eventsPrefix: string): Promise<{ token: string; taskIds: string[] }> {
  const suffix = randomBytes(4).toString('hex');
  const { signUp } = await graphql<{ signUp: { accessToken: string } }>(
    url,
    'mutation ($e: String!, $p: String!) { signUp(email: $e, password: $p, name: "Bench") { accessToken } }',
    { e: `bench-${suffix}@example.com`, p: 'correct horse battery staple' },
  );
  const token = signUp.accessToken;
  const { createAgent } = await graphql<{ createAgent: { id: string } }>(
    url,
    'mutation ($i: CreateAgentInput!) { createAgent(input: $i) { id } }',
    { i: { name: 'Bench echo', provider: 'echo', model: 'echo-1' } },
    token,
  );
  // Twenty runTask fields per request (the router's default MAX_ROOT_FIELDS), eight requests at once.
  const perRequest = 20;
  const batches = await pool(Math.ceil(count / perRequest), 8, async (batch) => {
    const size = Math.min(perRequest, count - batch * perRequest);
    const fields = Array.from({ length: size }, (_, i) => `t${i}: runTask(input: { agentId: $agent, input: "benchmark task ${batch * perRequest + i}" }) { id }`);
    const data = await graphql<Record<string, { id: string }>>(url, `mutation ($agent: ID!) { ${fields.join(' ')} }`, { agent: createAgent.id }, token);
    return Array.from({ length: size }, (_, i) => data[`t${i}`].id);
  });
  const taskIds = batches.flat();
  // The outbox relay appends each task's QUEUED event (sequence 1) shortly after; wait for all of them.
  const deadline = Date.now() + 60_000;
  for (;;) {
    const pipeline = redis.pipeline();
    for (const id of taskIds) pipeline.hget(`${eventsPrefix}task:{${id}}:state`, 'seq');
    const replies = (await pipeline.exec()) ?? [];
    const missing = replies.filter(([, value]) => !value || Number(value) < 1).length;
    if (missing === 0) break;
    if (Date.now() > deadline) throw new Error(`${missing} of ${count} tasks have no QUEUED event after 60 s`);
    await sleep(200);
  }
  return { token, taskIds };
}

/** What both contenders share: the run's settings, the publisher, window numbers, Redis. */
interface RunContext {
  options: BenchOptions;
  settings: Settings;
  publisher: IpcPeer;
  nextWindow: () => number;
  /** Every child process, stopped at the end. */
  children: Child[];
  redis: Redis;
}

/** One server under test. */
interface Contender {
  name: string;
  server: Child;
  loadConfig: LoadGeneratorConfig;
  /** Also measure subscribers selecting the federated `task` field (the router only). */
  withFederated: boolean;
  /** Other processes of the system under test on the same cores (the router's subgraphs). */
  neighbours: Child[];
}

/** Identifies the Redis server process: a window during which it restarted (and lost what it held) does not count. */
async function redisRunId(redis: Redis): Promise<string> {
  try {
    return /run_id:(\w+)/.exec(await redis.info('server'))?.[1] ?? '?';
  } catch {
    return 'unreachable';
  }
}

/** Measures one contender (router or bare) with a fresh load generator on the same cores. */
async function measureContender(run: RunContext, contender: Contender): Promise<ContenderFigures> {
  const { options, settings, publisher, nextWindow, children } = run;
  const { name, server, loadConfig, withFederated } = contender;
  const log = (line: string) => options.log(`subscriptions/${name}: ${line}`);
  const loadProcess = spawnNode(`${name} load generator`, 'benchmarks/subscriptions/load-generator.ts', {
    cpus: options.cpus?.load ?? null,
    pin: 'spawn',
    raiseFileLimit: true,
    env: { BENCH_CONFIG: JSON.stringify(loadConfig) },
    nodeArgs: ['--max-old-space-size=4096'],
    ipc: true,
  });
  children.push(loadProcess);
  const loadgen = new IpcPeer(loadProcess);
  let rssPeakMb = 0;
  const sampler = setInterval(() => {
    const memory = memoryOf(server.pid);
    if (memory) rssPeakMb = Math.max(rssPeakMb, memory.rssMb, memory.peakMb);
  }, 250);
  try {
    const connect = await loadgen.request<ConnectResult>({ cmd: 'connect' }, 300_000);
    log(`${connect.connected}/${connect.subscribers} subscribers connected in ${(connect.ms / 1000).toFixed(1)} s${connect.failed ? ` (${connect.failed} failed: ${connect.firstError})` : ''}`);
    if (connect.connected < connect.subscribers * 0.99) throw new Error(`only ${connect.connected} of ${connect.subscribers} subscribers connected: ${connect.firstError}`);
    const rssConnectedMb = memoryOf(server.pid)?.rssMb ?? null;
    if (process.env.BENCH_SUBSCRIPTIONS_HEAP_SNAPSHOT) {
      // The server runs with --heapsnapshot-signal=SIGUSR2 (see the header): one snapshot with every subscriber connected.
      process.kill(server.pid, 'SIGUSR2');
      await sleep(Number(process.env.BENCH_SUBSCRIPTIONS_HEAP_SNAPSHOT) * 1000 || 10_000);
    }

    const measure = async (rate: number, publish: { durationMs?: number; count?: number }): Promise<WindowFigures> => {
      const window = nextWindow();
      const neighboursCpu = () => contender.neighbours.reduce<number | null>((sum, child) => (sum === null ? null : sum + (cpuSecondsOf(child.pid) ?? NaN)), 0);
      const cpu0 = [cpuSecondsOf(server.pid), cpuSecondsOf(loadProcess.pid), neighboursCpu()];
      const wait0 = cpuWaitMsOf(server.pid);
      const redisBefore = await redisRunId(run.redis);
      const started = Date.now();
      const published = await publisher.request<PublishResult>({ cmd: 'publish', window, deliveriesPerSecond: rate, ...publish }, (publish.durationMs ?? 60_000) + 60_000);
      await drain(loadgen, window, published.expectedDeliveries);
      const report = await loadgen.request<WindowReport>({ cmd: 'report', window });
      const seconds = (Date.now() - started) / 1000;
      const used = [cpuSecondsOf(server.pid), cpuSecondsOf(loadProcess.pid), neighboursCpu()].map((value, i) => (value === null || cpu0[i] === null ? null : value - cpu0[i]!));
      const cpu = used.map((value) => (value === null ? null : value / seconds));
      const wait1 = cpuWaitMsOf(server.pid);
      const lastReceipt = Math.max(report.plain.last, report.federated.last);
      const spanMs = Math.max(published.elapsedMs, lastReceipt - published.startedAt);
      const deliveriesPerS = report.received / (spanMs / 1000);
      const p99 = p99Of(report);
      const redisRestarted = (await redisRunId(run.redis)) !== redisBefore;
      const why = redisRestarted
        ? REDIS_RESTARTED
        : report.received < published.expectedDeliveries * 0.99
          ? `${published.expectedDeliveries - report.received} of ${published.expectedDeliveries} deliveries missing`
          : p99 === null || p99 >= P99_LIMIT_MS
            ? `p99 ${p99?.toFixed(1)} ms`
            : published.saturated || published.published / (published.elapsedMs / 1000) < (rate / PER_TASK) * 0.9
              ? 'the publisher fell behind'
              : undefined;
      return {
        rate,
        deliveriesPerS,
        expected: published.expectedDeliveries,
        received: report.received,
        latency: report.plain,
        federated: report.federated,
        serverCpu: cpu[0],
        loadCpu: cpu[1],
        serverUsPerDelivery: used[0] === null || report.received === 0 ? null : (used[0] / report.received) * 1e6,
        serverCpuWait: wait0 === null || wait1 === null ? null : (wait1 - wait0) / 1000 / seconds,
        neighboursCpu: contender.neighbours.length && cpu[2] !== null && Number.isFinite(cpu[2]) ? cpu[2] : null,
        publisherSaturated: published.saturated,
        pass: why === undefined,
        why,
      };
    };

    // Every subscriber receives one event of a warm-up round before anything is measured.
    for (let round = 1; ; round++) {
      const warm = await measure(5000, { count: settings.tasks });
      if (warm.received >= warm.expected) break;
      log(`warm-up round ${round}: ${warm.received}/${warm.expected} deliveries`);
      if (round === 5) throw new Error(`subscribers are not all receiving events (${warm.received}/${warm.expected} in the last warm-up round)`);
      await sleep(2000);
    }

    log(`1,000 deliveries/s for ${settings.sustainedMs / 1000} s`);
    let sustained = await measure(1000, { durationMs: settings.sustainedMs });
    log(describe(sustained));
    if (sustained.why === REDIS_RESTARTED) {
      sustained = await measure(1000, { durationMs: settings.sustainedMs });
      log(`again: ${describe(sustained)}`);
    }

    // The long window is the first step when it held; the steps go on from the next rate.
    const steps: WindowFigures[] = [];
    let best: WindowFigures | null = sustained.pass ? sustained : null;
    let failedAt: number | null = null;
    // A rate that fails is tried once more before it counts, and (full form) a third time when the server
    // spent much of the failed window waiting for a core that other work held: one stall of the
    // machine should not decide the figure, for either contender. The quick form does not retry a
    // step whose p99 was more than twice the limit.
    const step = async (rate: number): Promise<WindowFigures> => {
      let figures = await measure(rate, { durationMs: settings.stepMs });
      steps.push(figures);
      log(describe(figures));
      const worthRetrying = (failed: WindowFigures) => (failed.latency.p99 ?? 0) < settings.retryBelowMs;
      for (let attempt = 2; !figures.pass && worthRetrying(figures) && (attempt === 2 || (figures.serverCpuWait ?? 0) > NOISY_WAIT) && attempt <= settings.attempts; attempt++) {
        await sleep(500);
        figures = await measure(rate, { durationMs: settings.stepMs });
        steps.push(figures);
        log(`again: ${describe(figures)}`);
      }
      return figures;
    };
    for (const rate of settings.rates) {
      if (best && rate <= best.rate) continue;
      const figures = await step(rate);
      if (!figures.pass) {
        failedAt = rate;
        break;
      }
      best = figures;
    }
    for (let i = 0; i < settings.refinements && failedAt !== null; i++) {
      const low = best?.rate ?? 0;
      const mid = Math.round((low + failedAt) / 2 / 500) * 500;
      if (mid <= low || mid >= failedAt) break;
      await sleep(500);
      const figures = await step(mid);
      if (figures.pass) best = figures;
      else failedAt = mid;
    }
    const maxNote =
      failedAt === null
        ? `p99 stayed under ${P99_LIMIT_MS} ms up to the highest rate tried (${settings.rates.at(-1)}/s)`
        : best === null
          ? `already ${steps[0].why} at ${steps[0].rate}/s`
          : `held at ${best.rate}/s; failed at ${failedAt}/s (${steps.findLast((figures) => figures.rate === failedAt)?.why})`;

    let federated: WindowFigures | undefined;
    if (withFederated) {
      await sleep(500);
      // At most 100 federated subscribers (one per task in the quick run, one per ten tasks in the
      // full one): each re-subscription is authorized and its first `task` fetched through the gateway.
      const every = Math.max(PER_TASK, settings.subscribers / FEDERATED_SUBSCRIBERS);
      const switched = await loadgen.request<number>({ cmd: 'resubscribe', every });
      // Warm-up rounds until every switched subscriber received an event: each one's first `task`
      // fetch through the gateway (and its authorization) is not part of the window.
      for (let round = 1; ; round++) {
        await sleep(500);
        const warm = await measure(5000, { count: settings.tasks });
        if (warm.federated.count >= switched) break;
        log(`federated warm-up round ${round}: ${warm.federated.count}/${switched} federated subscribers received the event`);
        if (round === 5) break;
      }
      log(`${switched} subscribers (one in ${every}) switched to the federated selection; 1,000 deliveries/s for ${settings.federatedMs / 1000} s`);
      federated = await measure(1000, { durationMs: settings.federatedMs });
      log(`federated: p50 ${federated.federated.p50?.toFixed(1)} ms, p99 ${federated.federated.p99?.toFixed(1)} ms; plain: p99 ${federated.latency.p99?.toFixed(1)} ms`);
    }

    const status = await loadgen.request<LoadStatus>({ cmd: 'status' });
    const end = memoryOf(server.pid);
    if (end) rssPeakMb = Math.max(rssPeakMb, end.peakMb, end.rssMb);
    await loadgen.request({ cmd: 'close' }, 60_000).catch(() => undefined);
    return {
      connect,
      sustained,
      steps,
      maxDeliveriesPerS: best ? best.deliveriesPerS : null,
      maxUsPerDelivery: best ? best.serverUsPerDelivery : null,
      maxNote,
      federated,
      rssConnectedMb,
      rssPeakMb: rssPeakMb || null,
      status,
    };
  } finally {
    clearInterval(sampler);
    await loadProcess.stop(5000);
  }
}

const p99Of = (report: WindowReport): number | null => {
  if (report.federated.count === 0) return report.plain.p99;
  return Math.max(report.plain.p99 ?? 0, report.federated.p99 ?? 0);
};

function describe(window: WindowFigures): string {
  const cpu = (value: number | null) => (value === null ? '?' : `${Math.round(value * 100)}%`);
  return (
    `${window.rate}/s: ${Math.round(window.deliveriesPerS)} deliveries/s, p50 ${window.latency.p50?.toFixed(1)} ms, p99 ${window.latency.p99?.toFixed(1)} ms, ` +
    `max ${window.latency.max?.toFixed(1)} ms, ${window.received}/${window.expected} received, server CPU ${cpu(window.serverCpu)} ` +
    `(${cpuPerDelivery(window)?.toFixed(1) ?? '?'} µs/delivery, waited for a CPU ${cpu(window.serverCpuWait)}), ` +
    `${window.neighboursCpu === null ? '' : `subgraphs CPU ${cpu(window.neighboursCpu)}, `}load CPU ${cpu(window.loadCpu)}` +
    (window.pass ? '' : ` — over the limit: ${window.why}`)
  );
}

/** Server CPU time per delivery (µs): less sensitive than latency to whatever else the machine runs. */
const cpuPerDelivery = (window: WindowFigures): number | null => window.serverUsPerDelivery;

/** Waits until the window's deliveries all arrived, or none arrived for a second. */
async function drain(loadgen: IpcPeer, window: number, expected: number): Promise<void> {
  const started = Date.now();
  let last = -1;
  let changed = Date.now();
  while (Date.now() - started < 20_000) {
    const received = await loadgen.request<number>({ cmd: 'received', window });
    if (received >= expected) return;
    if (received !== last) {
      last = received;
      changed = Date.now();
    } else if (Date.now() - changed >= 1000) {
      return;
    }
    await sleep(50);
  }
}

export const run: Section = async (given) => {
  const sectionStart = Date.now();
  // Progress lines carry the seconds since the section started (the time budget is part of the design).
  const options: BenchOptions = { ...given, log: (line) => given.log(`[${((Date.now() - sectionStart) / 1000).toFixed(0).padStart(3)} s] ${line}`) };
  const settings = settingsFor(options.quick);
  const sutCpus = options.cpus?.sut ?? null;
  const extraNodeArgs = process.env.BENCH_SUBSCRIPTIONS_NODE_ARGS?.split(/\s+/).filter(Boolean) ?? ROUTER_NODE_ARGS;
  const profileDir = process.env.BENCH_SUBSCRIPTIONS_CPU_PROF;
  const serverLog = process.env.BENCH_SUBSCRIPTIONS_SERVER_LOG;
  const contenders = new Set((process.env.BENCH_SUBSCRIPTIONS_CONTENDERS ?? 'router,bare').split(','));
  const serverNodeArgs = [...extraNodeArgs, ...(profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [])];
  const children: Child[] = [];
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  let platform: BenchPlatform | undefined;
  let windows = 0;
  const nextWindow = () => ++windows;
  const stopAll = async () => {
    await Promise.all(children.splice(0).map((child) => child.stop(30_000)));
  };

  try {
    // Every server and the load generator hold one socket per subscriber (children raise their soft limit to the hard one).
    const hardLimit = Number(execFileSync('sh', ['-c', 'ulimit -Hn']).toString().trim());
    if (Number.isFinite(hardLimit) && hardLimit < settings.subscribers + 1000) {
      throw new Error(`The open-file limit (ulimit -Hn ${hardLimit}) is below ${settings.subscribers} subscribers plus 1,000: raise it (ulimit -n, LimitNOFILE) or set BENCH_SUBSCRIBERS lower.`);
    }

    // ---------------------------------------------------------------- the platform
    // The run's platform (the task section measures it next): four subgraphs and the router on the
    // cores under test, rate limits on with a budget one user with every subscriber never reaches.
    options.log(`subscriptions: starting the four subgraphs and the router (cores ${sutCpus ?? 'any'})`);
    platform = await sharedPlatform({ cpus: sutCpus, routerNodeArgs: serverNodeArgs, routerLogFile: serverLog });
    const router = platform.services.find((service) => service.name === 'router')!;
    const subgraphs = platform.services.filter((service) => service !== router);
    const graphqlUrl = platform.url;
    const eventsPrefix = platform.env.EVENTS_PREFIX;

    options.log(`subscriptions: creating ${settings.tasks} tasks through the router`);
    const { token, taskIds } = await createTasks(graphqlUrl, settings.tasks, redis, eventsPrefix);

    const publisherProcess = spawnNode('publisher', 'benchmarks/subscriptions/publisher.ts', {
      cpus: options.cpus?.load ?? null,
      pin: 'spawn',
      env: { BENCH_CONFIG: JSON.stringify({ redisUrl: REDIS_URL, prefix: eventsPrefix, taskIds, perTask: PER_TASK } satisfies PublisherConfig) },
      ipc: true,
    });
    children.push(publisherProcess);
    const publisher = new IpcPeer(publisherProcess);

    const loadConfig = (url: string, authorization: string | null): LoadGeneratorConfig => ({
      url,
      authorization,
      taskIds,
      perTask: PER_TASK,
      connectConcurrency: settings.connectConcurrency,
    });

    // ---------------------------------------------------------------- the router
    if (!contenders.has('router')) throw new Error('BENCH_SUBSCRIPTIONS_CONTENDERS must include router (it creates the tasks).');
    options.log(`subscriptions: ${settings.subscribers} subscribers through the router`);
    const context: RunContext = { options, settings, publisher, nextWindow, children, redis };
    const routerFigures = await measureContender(context, {
      name: 'router',
      server: router,
      loadConfig: loadConfig(graphqlUrl.replace(/^http/, 'ws'), `Bearer ${token}`),
      withFederated: true,
      neighbours: subgraphs,
    });

    if (!contenders.has('bare')) return report(settings, options, routerFigures, null, extraNodeArgs);

    // ---------------------------------------------------------------- the bare baseline
    // The cores under test go to the bare server alone: the platform, idle now, waits on the load cores.
    if (options.cpus) platform.moveServices(options.cpus.load);
    const barePort = await freePort();
    const bare = spawnNode('bare server', 'benchmarks/subscriptions/bare-server.ts', {
      cpus: sutCpus,
      raiseFileLimit: true,
      env: { PORT: String(barePort), REDIS_URL, EVENTS_PREFIX: eventsPrefix },
      nodeArgs: serverNodeArgs,
      logFile: serverLog,
    });
    children.push(bare);
    await waitForHealthy(`http://127.0.0.1:${barePort}/healthz`, bare, 30_000);
    options.log(`subscriptions: ${settings.subscribers} subscribers on the bare graphql-ws + RedisPubSub server`);
    const bareFigures = await measureContender(context, { name: 'bare', server: bare, loadConfig: loadConfig(`ws://127.0.0.1:${barePort}/graphql`, null), withFederated: false, neighbours: [] });

    return report(settings, options, routerFigures, bareFigures, extraNodeArgs);
  } finally {
    await stopAll();
    platform?.restoreServices();
    redis.disconnect();
  }
};

function report(settings: Settings, options: BenchOptions, router: ContenderFigures, bare: ContenderFigures | null, nodeArgs: string[]): SectionResult {
  const ratio = router.maxDeliveriesPerS !== null && bare?.maxDeliveriesPerS ? router.maxDeliveriesPerS / bare.maxDeliveriesPerS : null;
  const figures: Record<string, number | null> = {
    subscribers: router.connect.connected,
    events_per_s: round(router.sustained.deliveriesPerS, 0),
    p50_ms: round(router.sustained.latency.p50),
    p99_ms: round(router.sustained.latency.p99),
    p999_ms: round(router.sustained.latency.p999),
    max_ms: round(router.sustained.latency.max),
    router_rss_mb: round(router.rssPeakMb, 0),
    router_rss_connected_mb: round(router.rssConnectedMb, 0),
    max_events_per_s: round(router.maxDeliveriesPerS, 0),
    federated_p50_ms: round(router.federated?.federated.p50),
    federated_p99_ms: round(router.federated?.federated.p99),
    bare_subscribers: bare?.connect.connected ?? null,
    bare_events_per_s: round(bare?.sustained.deliveriesPerS, 0),
    bare_p50_ms: round(bare?.sustained.latency.p50),
    bare_p99_ms: round(bare?.sustained.latency.p99),
    bare_p999_ms: round(bare?.sustained.latency.p999),
    bare_max_ms: round(bare?.sustained.latency.max),
    bare_rss_mb: round(bare?.rssPeakMb, 0),
    bare_max_events_per_s: round(bare?.maxDeliveriesPerS, 0),
    max_events_ratio: round(ratio, 2),
    cpu_us_per_delivery: round(router.maxUsPerDelivery),
    bare_cpu_us_per_delivery: round(bare?.maxUsPerDelivery),
  };
  const steps = (figures: ContenderFigures) =>
    figures.steps
      .map((step) => {
        const waited = step.serverCpuWait === null ? '' : `, waited ${Math.round(step.serverCpuWait * 100)}%`;
        return `${step.rate}/s → ${Math.round(step.deliveriesPerS)}/s p99 ${step.latency.p99?.toFixed(1)} ms, CPU ${step.serverUsPerDelivery?.toFixed(1)} µs/delivery${waited}${step.pass ? '' : ` (${step.why})`}`;
      })
      .join('; ');
  const notes: Record<string, string> = {
    workload:
      `${settings.subscribers} graphql-ws clients (one WebSocket each, ${PER_TASK} per task, ${settings.tasks} tasks of one user) from one load-generator process; ` +
      `each selects \`taskEvents(taskId) { sequence type delta at }\`. A publisher process appends TOKEN events with the event log's append (Lua: XADD + PUBLISH), ` +
      `round-robin over the tasks; its delta carries the append time, and latency is receipt − append on the shared wall clock (performance.timeOrigin + performance.now()).`,
    pinning: options.cpus ? `servers (router + four subgraphs, or the bare server) on cores ${options.cpus.sut}; publisher and load generator on cores ${options.cpus.load}; Redis and PostgreSQL unpinned` : 'not pinned (taskset unavailable or one core)',
    p99_ms: `over ${settings.sustainedMs / 1000} s at 1,000 deliveries/s; router logs at warn, rate limits on (raised to 100,000,000/min for the one user)`,
    max_events_per_s: `the most deliveries/s with p99 < ${P99_LIMIT_MS} ms and every delivery arriving, in ${settings.stepMs / 1000} s steps (a failed step is tried once more${settings.retryBelowMs < Infinity ? ` when its p99 was under ${settings.retryBelowMs} ms` : ''}${settings.attempts > 2 ? `, and a third time when the server waited for a core more than ${NOISY_WAIT * 100}% of it` : ''}; rates tried: ${settings.rates.join(', ')}, then the gap bisected ${settings.refinements} time(s)), from the ${settings.sustainedMs / 1000} s window at 1,000/s up: ${router.maxNote}. Steps: ${steps(router)}`,
    bare_max_events_per_s: bare ? `${bare.maxNote}. Steps: ${steps(bare)}` : 'not measured (BENCH_SUBSCRIPTIONS_CONTENDERS)',
    router_rss_mb: `peak VmRSS/VmHWM of the router process over the run${nodeArgs.length ? ` (node ${nodeArgs.join(' ')}, same for the bare server: a young generation that lets a subscriber's wait state die young)` : ''}`,
    cpu_us_per_delivery: 'server CPU time (user + system, from /proc) per delivery in the fastest window that held, router and bare alike: less sensitive than latency to other work on the machine',
    federated_p99_ms: router.federated
      ? `router only: ${Math.min(settings.tasks, FEDERATED_SUBSCRIBERS)} subscribers (at most one per task) re-subscribed with \`task { status agent { name } }\` (fetched through the gateway once per task state), the others unchanged; ${settings.federatedMs / 1000} s at 1,000 deliveries/s; the plain subscribers' p99 in that window: ${router.federated.latency.p99?.toFixed(1)} ms`
      : 'not measured',
    bare: 'graphql-ws/use/ws + graphql-redis-subscriptions RedisPubSub on the same channels and JSON; no auth, no limits, no replay, no federation',
  };
  const waited = (figures: ContenderFigures | null) => (figures?.sustained.serverCpuWait == null ? '?' : `${(figures.sustained.serverCpuWait * 100).toFixed(1)}%`);
  notes.cpu_wait = `during the 1,000/s windows the router's main thread waited for a CPU held by something else ${waited(router)} of the time, the bare server's ${waited(bare)} (from /proc schedstat); more than a few per cent means other work on the machine is in the latency figures`;
  if (router.status.errors || router.status.closedUnexpectedly) notes.router_errors = `${router.status.errors} errors, ${router.status.closedUnexpectedly} sockets closed: ${router.status.firstError ?? ''}`;
  if (bare && (bare.status.errors || bare.status.closedUnexpectedly)) notes.bare_errors = `${bare.status.errors} errors, ${bare.status.closedUnexpectedly} sockets closed: ${bare.status.firstError ?? ''}`;
  if (router.federated && router.federated.federated.count === 0) notes.federated_p99_ms = 'no federated subscriber received an event in the window (they did not finish re-subscribing in time)';
  if (router.maxDeliveriesPerS === null) notes.max_events_per_s = `no rate held: ${router.maxNote}`;
  if (bare && bare.maxDeliveriesPerS === null) notes.bare_max_events_per_s = `no rate held: ${bare.maxNote}`;

  const ms = (value: number | null) => (value === null ? 'n/a' : value.toFixed(1));
  const table: [string, string, string][] = [
    ['subscribers (router / bare)', `${figures.subscribers} / ${figures.bare_subscribers}`, `${PER_TASK} per task, one socket each`],
    ['deliveries/s at 1k/s (router / bare)', `${figures.events_per_s} / ${figures.bare_events_per_s}`, `${settings.sustainedMs / 1000} s window`],
    ['p50 append→receipt (router / bare)', `${ms(figures.p50_ms)} / ${ms(figures.bare_p50_ms)}`, 'ms'],
    ['p99 append→receipt (router / bare)', `${ms(figures.p99_ms)} / ${ms(figures.bare_p99_ms)}`, `ms (target < ${P99_LIMIT_MS})`],
    ['max deliveries/s, p99 < 50 ms (router / bare)', `${figures.max_events_per_s ?? 'n/a'} / ${figures.bare_max_events_per_s ?? 'n/a'}`, `ratio ${figures.max_events_ratio ?? 'n/a'} (target ≥ 0.8)`],
    ['server CPU per delivery at max (router / bare)', `${ms(figures.cpu_us_per_delivery)} / ${ms(figures.bare_cpu_us_per_delivery)}`, 'µs'],
    ['peak RSS (router / bare)', `${figures.router_rss_mb ?? 'n/a'} / ${figures.bare_rss_mb ?? 'n/a'}`, 'MB (target < 1024 at 10k)'],
    ['federated subscribers p50 / p99', `${ms(figures.federated_p50_ms)} / ${ms(figures.federated_p99_ms)}`, `ms, ${Math.min(settings.tasks, FEDERATED_SUBSCRIBERS)} selecting task { status agent { name } }`],
  ];
  return { figures, notes, table };
}
