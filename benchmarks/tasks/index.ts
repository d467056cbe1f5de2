/**
 * Task pipeline throughput: tasks per second end to end — `runTask` through the router (HTTP, a
 * JWT) → outbox relay → RabbitMQ → worker → echo provider with no delay → final event received —
 * with 1, 2 and 4 worker processes on this machine's PostgreSQL, Redis and RabbitMQ (a fresh
 * database, vhost and key prefix, removed afterwards), and beside it, in the same run, the bare
 * machinery the issue defines (no GraphQL: INSERT, confirmed publish, consume, UPDATE, ten
 * PUBLISHes, UPDATE, ack) with the worker count of our best run.
 *
 * The headline figures see the final event the way the baseline does, in the Redis event log (one
 * PSUBSCRIBE), so that the two differ only in the pipeline; a last run with the best worker count
 * sees it through the router instead, as a client does (a graphql-ws `taskEvents` subscription
 * per task), and reports that separately (`tasks_per_s_ws`).
 *
 * Pinning (when the runner can): the platform's processes and every worker, ours and the bare
 * ones, and the bare submitter that inserts and publishes, on the cores under test; our load
 * generator on the load core. The baseline runs a second time with its submitter on the load core
 * (the placement of the earlier runs), reported beside it. PostgreSQL, Redis and RabbitMQ are the
 * machine's own services and run wherever the kernel puts them.
 *
 * Knobs for experiments (the defaults are what `npm run bench` reports): TASKS_BENCH_WORKERS=1,2,4 (2 in --quick),
 * TASKS_BENCH_CONCURRENCY=200, TASKS_BENCH_WS=0 (skip the run through the router; 1 runs it in the quick form too),
 * TASKS_BENCH_WORKER_ENV='{"WORKER_CONCURRENCY":"50"}', TASKS_BENCH_PROFILE=dir (`--cpu-prof` of
 * every platform process into dir).
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import type { BenchOptions, Section, SectionResult } from '../types.js';
import { prepareBare } from './bare.js';
import type { LoadConfig, LoadResult } from './load.js';
import { ROUTER_NODE_ARGS, sharedPlatform, type BenchPlatform } from '../support/platform.js';
import { sleep, spawnNode, type BenchChild as Child } from '../support/processes.js';
import { REDIS_URL } from '../support/redis.js';
import { CpuMeter, round, runJsonChild } from './support.js';

const INPUT = 'the quick brown fox jumps over it';

interface Sizes {
  warmupMs: number;
  windowMs: number;
  drainMs: number;
  concurrency: number;
}

interface RunResult {
  tasksPerSecond: number;
  completed: number;
  latency: { p50: number | null; p90: number | null; p99: number | null; max: number | null };
  errors: number;
  firstErrors: string[];
  undrained: number;
  /** CPU milliseconds per completed task, per process. */
  cpu: Record<string, number>;
}

async function graphql<T>(url: string, query: string, variables: Record<string, unknown>, token?: string): Promise<T> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await response.json()) as { data?: T; errors?: { message: string }[] };
  if (!body.data || body.errors?.length) throw new Error(`${query.slice(0, 40)}… failed: ${JSON.stringify(body.errors)}`);
  return body.data;
}

/** A user with an echo agent: the access token (valid 15 min, longer than the section) and the agent. */
async function benchUser(url: string): Promise<{ token: string; agentId: string }> {
  const { signUp } = await graphql<{ signUp: { accessToken: string } }>(
    url,
    'mutation ($e: String!, $p: String!) { signUp(email: $e, password: $p) { accessToken } }',
    { e: `bench-${randomUUID().slice(0, 8)}@example.com`, p: 'correct horse battery staple' },
  );
  const { createAgent } = await graphql<{ createAgent: { id: string } }>(
    url,
    'mutation { createAgent(input: { name: "Bench", provider: "echo", model: "echo-1" }) { id } }',
    {},
    signUp.accessToken,
  );
  return { token: signUp.accessToken, agentId: createAgent.id };
}

/** CPU seconds per process over the measured window (the load script starts in about a second). */
async function meterWindow(meter: CpuMeter, sizes: Sizes): Promise<Record<string, number>> {
  await sleep(1000 + sizes.warmupMs);
  meter.start();
  await sleep(sizes.windowMs);
  return meter.stop();
}

/**
 * CPU milliseconds per completed task, per process (and in total): unlike tasks/s, this hardly
 * moves when other work shares the machine, so it is what the pipeline's optimisations are judged by.
 */
function cpuPerTask(used: Record<string, number>, completed: number): Record<string, number> {
  const perTask: Record<string, number> = {};
  let total = 0;
  for (const [name, seconds] of Object.entries(used)) {
    perTask[name] = completed ? Math.round((seconds * 1000 * 100) / completed) / 100 : 0;
    total += seconds;
  }
  perTask.total = completed ? Math.round((total * 1000 * 100) / completed) / 100 : 0;
  return perTask;
}

const databaseOf = (url: string) => new URL(url).pathname.slice(1);

async function runOurs(
  platform: BenchPlatform,
  options: BenchOptions,
  sizes: Sizes,
  workers: number,
  user: { token: string; agentId: string },
  observer: 'ws' | 'redis',
): Promise<RunResult & { failed: number }> {
  const workerEnv = JSON.parse(process.env.TASKS_BENCH_WORKER_ENV ?? '{}') as Record<string, string>;
  // Workers stay up from one run to the next (they are idle in between): only the tables start over.
  await platform.resetTasks();
  await platform.setWorkers(workers, workerEnv);
  const meter = new CpuMeter(() => {
    const named: Record<string, number[]> = {};
    for (const child of [...platform.services, ...platform.workers]) (named[child.name.startsWith('worker') ? 'workers' : child.name] ??= []).push(child.child.pid!);
    return named;
  }, databaseOf(platform.databaseUrl));
  const config: LoadConfig = {
    url: platform.url,
    token: user.token,
    agentId: user.agentId,
    concurrency: sizes.concurrency,
    warmupMs: sizes.warmupMs,
    windowMs: sizes.windowMs,
    drainMs: sizes.drainMs,
    input: INPUT,
    observer,
    sockets: Math.max(1, Math.ceil(sizes.concurrency / 25)),
    redisUrl: REDIS_URL,
    channelPrefix: `${platform.env.EVENTS_PREFIX}task-events:`,
  };
  if (process.env.TASKS_BENCH_PROFILE) options.log(`tasks: pids ${[...platform.services, ...platform.workers].map((c) => `${c.name}=${c.child.pid}`).join(' ')}`);
  const metered = meterWindow(meter, sizes);
  const result = await runJsonChild<LoadResult>('tasks load', 'benchmarks/tasks/load.ts', config, options.cpus?.load, sizes.warmupMs + sizes.windowMs + sizes.drainMs + 60_000);
  const cpu = { ...cpuPerTask(await metered, result.completed), load: result.loadCpuMsPerTask };
  options.log(
    `tasks: ${workers} worker(s), final event via ${observer}: ${result.tasksPerSecond} tasks/s, p50 ${result.latency.p50} ms, p99 ${result.latency.p99} ms` +
      `${result.errors ? `, ${result.errors} errors (${result.firstErrors[0]})` : ''}${result.failed ? `, ${result.failed} failed` : ''}; CPU ms/task ${JSON.stringify(cpu)}`,
  );
  if (result.errors) {
    // Why the platform refused: its processes log errors at warn and above.
    const lines = [...platform.services, ...platform.workers].flatMap((c) =>
      c.output().split('\n').filter((line) => /"level":(40|50|60)/.test(line)).slice(-3).map((line) => `${c.name}: ${line.slice(0, 500)}`),
    );
    if (lines.length > 0) options.log(`tasks: last warnings and errors the platform logged:\n${lines.join('\n')}`);
  }
  return { ...result, cpu };
}

/**
 * The bare machinery with `workers` workers on the cores under test. `submitterCores` places the
 * bare submitter (the INSERT and confirmed publish of each task, and the PSUBSCRIBE that sees it
 * finish): 'sut' beside the workers, as our router and task service (which do that part for us)
 * share the cores under test with ours; 'load' on the load core, as the runs before 2026-11-27
 * 12:30 UTC placed it, which gives the baseline's submissions a core of their own.
 */
async function runBare(platform: BenchPlatform, options: BenchOptions, sizes: Sizes, workers: number, submitterCores: 'sut' | 'load'): Promise<RunResult> {
  await prepareBare(platform.databaseUrl, platform.amqpUrl);
  const channelPrefix = `${platform.env.EVENTS_PREFIX}bare:`;
  const workerConfig = { databaseUrl: platform.databaseUrl, amqpUrl: platform.amqpUrl, redisUrl: REDIS_URL, channelPrefix, prefetch: 100, poolMax: 10 };
  const bareWorkers: Child[] = [];
  try {
    for (let i = 0; i < workers; i++) {
      bareWorkers.push(spawnNode(`bare worker ${i + 1}`, 'benchmarks/tasks/bare-worker.ts', { env: { BENCH_CONFIG: JSON.stringify(workerConfig) }, cpus: options.cpus?.sut }));
    }
    for (const worker of bareWorkers) {
      const deadline = Date.now() + 30_000;
      while (!worker.output().includes('bare worker ready')) {
        if (worker.child.exitCode !== null || Date.now() > deadline) throw new Error(`${worker.name} did not start:\n${worker.output()}`);
        await sleep(50);
      }
      worker.pin();
    }
    const meter = new CpuMeter(() => ({ workers: bareWorkers.map((w) => w.child.pid!) }), databaseOf(platform.databaseUrl));
    const metered = meterWindow(meter, sizes);
    const result = await runJsonChild<Omit<RunResult, 'cpu'> & { loadCpuMsPerTask: number }>(
      'bare load',
      'benchmarks/tasks/bare-load.ts',
      { databaseUrl: platform.databaseUrl, amqpUrl: platform.amqpUrl, redisUrl: REDIS_URL, channelPrefix, concurrency: sizes.concurrency, warmupMs: sizes.warmupMs, windowMs: sizes.windowMs, drainMs: sizes.drainMs, poolMax: 10 },
      submitterCores === 'sut' ? options.cpus?.sut : options.cpus?.load,
      sizes.warmupMs + sizes.windowMs + sizes.drainMs + 60_000,
    );
    const cpu: Record<string, number> = { ...cpuPerTask(await metered, result.completed), submitter: result.loadCpuMsPerTask };
    // On the cores under test the submitter is part of the system measured, as our router is.
    if (submitterCores === 'sut') cpu.total = Math.round((cpu.total + cpu.submitter) * 100) / 100;
    options.log(
      `tasks: bare machinery, ${workers} worker(s), submitter on the ${submitterCores === 'sut' ? 'cores under test' : 'load core'}: ${result.tasksPerSecond} tasks/s, p50 ${result.latency.p50} ms, p99 ${result.latency.p99} ms; CPU ms/task ${JSON.stringify(cpu)}`,
    );
    return { ...result, cpu };
  } finally {
    await Promise.all(bareWorkers.map((w) => w.stop()));
  }
}

/** Connections other users of the machine's PostgreSQL hold, and its limit: the platform needs about 10 per process. */
async function postgresHeadroom(databaseUrl: string): Promise<string> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ used: number; max: number }>(`select count(*)::int as used, current_setting('max_connections')::int as max from pg_stat_activity`);
    return `${rows[0].used} of ${rows[0].max} PostgreSQL connections in use before the run`;
  } finally {
    await client.end();
  }
}

const summarize = (r: RunResult) => `p50 ${r.latency.p50} ms, p99 ${r.latency.p99} ms${r.errors ? `, ${r.errors} errors` : ''}`;

export const run: Section = async (options): Promise<SectionResult> => {
  const sizes: Sizes = {
    warmupMs: options.quick ? 1500 : 5000,
    windowMs: options.quick ? 4000 : 15_000,
    drainMs: options.quick ? 1000 : 2000,
    concurrency: Number(process.env.TASKS_BENCH_CONCURRENCY ?? 200),
  };
  // The quick form runs the same paths with the one worker count the full run usually finds best.
  const counts = (process.env.TASKS_BENCH_WORKERS ?? (options.quick ? '2' : '1,2,4')).split(',').map(Number);
  const profileDir = process.env.TASKS_BENCH_PROFILE;
  const started = Date.now();
  // The run's platform (the subscriptions section started it, unless it did not run or wanted other flags).
  const platform = await sharedPlatform({
    cpus: options.cpus?.sut ?? null,
    nodeArgs: profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [],
    routerNodeArgs: ROUTER_NODE_ARGS,
  });
  options.log(`tasks: platform up after ${((Date.now() - started) / 1000).toFixed(1)} s`);
  const figures: Record<string, number | null> = {};
  const notes: Record<string, string> = {};
  const table: [string, string, string][] = [];
  try {
    notes.postgres = await postgresHeadroom(platform.databaseUrl);
    const user = await benchUser(platform.url);
    const ours: Record<number, RunResult> = {};
    for (const count of counts) ours[count] = await runOurs(platform, options, sizes, count, user, 'redis');
    const best = counts.reduce((a, b) => (ours[b].tasksPerSecond > ours[a].tasksPerSecond ? b : a));
    // The quick form leaves it out to keep under 3 minutes (its subscription section runs taskEvents through the router).
    const watchThroughRouter = process.env.TASKS_BENCH_WS ? process.env.TASKS_BENCH_WS !== '0' : !options.quick;
    const viaRouter = watchThroughRouter ? await runOurs(platform, options, sizes, best, user, 'ws') : null;
    await platform.stopWorkers();
    const bare = await runBare(platform, options, sizes, best, 'sut');
    // The second placement only in the full run: the quick form keeps under its 3 minutes.
    const bareApart = options.quick ? null : await runBare(platform, options, sizes, best, 'load');

    figures.workers = best;
    figures.tasks_per_s = ours[best].tasksPerSecond;
    figures.p50_ms = ours[best].latency.p50;
    figures.p99_ms = ours[best].latency.p99;
    figures.bare_tasks_per_s = bare.tasksPerSecond;
    figures.bare_p99_ms = bare.latency.p99;
    figures.bare_workers = best;
    figures.ratio_to_bare = round(ours[best].tasksPerSecond / bare.tasksPerSecond, 2);
    figures.bare_tasks_per_s_submitter_apart = bareApart?.tasksPerSecond ?? null;
    figures.ratio_to_bare_submitter_apart = bareApart ? round(ours[best].tasksPerSecond / bareApart.tasksPerSecond, 2) : null;
    for (const count of [1, 2, 4]) {
      figures[`tasks_per_s_${count}w`] = ours[count]?.tasksPerSecond ?? null;
      figures[`p99_ms_${count}w`] = ours[count]?.latency.p99 ?? null;
      if (!ours[count]) notes[`tasks_per_s_${count}w`] = `not run (${process.env.TASKS_BENCH_WORKERS ? 'TASKS_BENCH_WORKERS' : 'the quick form runs 2 workers only'})`;
    }
    figures.tasks_per_s_ws = viaRouter?.tasksPerSecond ?? null;
    figures.p99_ms_ws = viaRouter?.latency.p99 ?? null;
    figures.cpu_ms_per_task = ours[best].cpu.total;
    figures.bare_cpu_ms_per_task = bare.cpu.total;
    figures.concurrency = sizes.concurrency;
    figures.window_s = sizes.windowMs / 1000;

    notes.tasks_per_s =
      `Tasks whose SUCCEEDED event arrived in a ${sizes.windowMs / 1000} s window after ${sizes.warmupMs / 1000} s of warm-up, ${sizes.concurrency} submitters with one task in flight each: ` +
      `runTask through the router with a JWT (rate limits on, with a budget the load never reaches), echo provider with ECHO_TOKEN_DELAY_MS=0 ("${INPUT} <n>": 9 tokens), ` +
      'SUCCEEDED seen in the Redis event log (one PSUBSCRIBE on the task channels, as the baseline sees its own). Latency: submit → SUCCEEDED received.';
    notes.tasks_per_s_ws = viaRouter
      ? `The same with ${best} worker(s), SUCCEEDED seen through the router: a graphql-ws taskEvents subscription per task (authorized through the gateway, replayed from the log), over ${Math.ceil(sizes.concurrency / 25)} sockets.`
      : `not run (${options.quick && !process.env.TASKS_BENCH_WS ? 'the quick form; TASKS_BENCH_WS=1 runs it' : 'TASKS_BENCH_WS=0'})`;
    notes.workers = `The worker count of the best run among ${counts.join(', ')}; the baseline runs with the same count.`;
    notes.bare_tasks_per_s =
      'Bare machinery (no GraphQL, none of our code): per task one INSERT and one persistent publish to a quorum queue with its own confirm (by the bare submitter), one consume with manual ack ' +
      '(prefetch 100), UPDATE to RUNNING, ten Redis PUBLISHes (ioredis enableAutoPipelining; the tenth, SUCCEEDED, after the final UPDATE), UPDATE to SUCCEEDED, ack; 200 in flight; SUCCEEDED seen by PSUBSCRIBE. ' +
      'All of it on the cores under test, as ours: the submitter does for the baseline what our router and task service do for us. (Its PSUBSCRIBE, which sees each task finish, rides along there; ours is in the load generator.)';
    notes.bare_tasks_per_s_submitter_apart = bareApart
      ? `The same baseline with its submitter on the load core instead (the placement of the runs before 2026-11-27 12:30 UTC): the baseline's INSERT and publish get a core of their own, ours do not. ${JSON.stringify(bareApart.cpu)} CPU ms/task; p99 ${bareApart.latency.p99} ms.`
      : 'not run in the quick form (the full run measures it)';
    notes.cpu_ms_per_task =
      'CPU milliseconds per completed task over the window, per process; PostgreSQL: the backends of the benchmark database; Redis and RabbitMQ: the whole server (other users of the machine included); ' +
      '"load": our load generator, on the load core and not in "total"; "submitter": the bare one (which also inserts and publishes), in "total" where it runs on the cores under test. ' +
      `${counts.map((c) => `${c}w ${JSON.stringify(ours[c].cpu)}`).join('; ')}; bare ${JSON.stringify(bare.cpu)}${viaRouter ? `; via router ${JSON.stringify(viaRouter.cpu)}` : ''}`;
    if (options.cpus) notes.pinning = `Platform processes, workers (ours and bare) and the bare submitter on cores ${options.cpus.sut}; our load generator (and, in the second baseline run, the bare submitter) on core ${options.cpus.load}.`;
    const problems = [...counts.map((c) => ours[c]), bare, ...(bareApart ? [bareApart] : []), ...(viaRouter ? [viaRouter] : [])].filter((r) => r.errors > 0 || r.undrained > 0);
    if (problems.length) {
      // What the services logged about it (the router logs why a subgraph fetch failed).
      const logged = platform.services.flatMap((service) =>
        service
          .output()
          .split('\n')
          .filter((line) => /"level":(50|60)/.test(line))
          .slice(0, 2)
          .map((line) => `${service.name}: ${line.slice(0, 400)}`),
      );
      notes.errors =
        problems.map((r) => `${r.errors} errors (${r.firstErrors.join(' | ')}), ${r.undrained} still in flight after the drain`).join('; ') +
        (logged.length ? `; logged: ${logged.join(' / ')}` : '');
    }

    for (const count of counts) table.push([`tasks, ${count} worker${count > 1 ? 's' : ''}`, `${ours[count].tasksPerSecond}`, `tasks/s, ${summarize(ours[count])}, ${ours[count].cpu.total} ms CPU/task`]);
    table.push([`bare machinery, ${best} worker${best > 1 ? 's' : ''}`, `${bare.tasksPerSecond}`, `tasks/s, ${summarize(bare)}, ${bare.cpu.total} ms CPU/task`]);
    table.push(['tasks / bare', `${figures.ratio_to_bare}`, `× (target ≥ 1.0; ${best} workers each)`]);
    if (bareApart) table.push([`bare, submitter on the load core`, `${bareApart.tasksPerSecond}`, `tasks/s, ${summarize(bareApart)}; ours / this ${figures.ratio_to_bare_submitter_apart}×`]);
    if (viaRouter) table.push([`tasks, ${best} worker${best > 1 ? 's' : ''}, watched through the router`, `${viaRouter.tasksPerSecond}`, `tasks/s, ${summarize(viaRouter)}`]);
    return { figures, notes, table };
  } finally {
    // The platform stays up for whatever comes next (benchmarks/run.ts stops it); its workers do not.
    await platform.stopWorkers();
  }
};
