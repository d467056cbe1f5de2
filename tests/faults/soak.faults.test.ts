import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { signUp } from '../support/client.js';
import { startPlatform, type Platform } from '../support/platform.js';
import type { ServiceProcess } from '../support/processes.js';
import { ScenarioReport, SHORT } from './support/report.js';
import { postOperation, type RawAnswer } from './lib/http.js';
import { errorLogs, mean, openDescriptors, rssMib } from './lib/proc.js';
import { runSubscription } from './lib/ws.js';

/**
 * Scenario 9, the soak: mixed load at a steady rate through the router — queries, mutations, calls
 * with API keys, and tasks each followed by a graphql-ws subscriber on a fresh connection — for
 * five minutes (`SOAK_SECONDS` overrides; the short form skips it). No answer may be a 5xx or an
 * error, every task must end SUCCEEDED with the echo of its input (seen whole by its subscriber),
 * and the resident memory and open sockets of the router and of each worker must be as flat in the
 * last window as in the first one after warm-up.
 */

const SOAK_SECONDS = Number(process.env.SOAK_SECONDS ?? 300);
/** Operations started per second, spread evenly. */
const RATE_PER_SECOND = Number(process.env.SOAK_RATE ?? 10);
/** One operation in five is a task with a subscriber. */
const MIX = ['query', 'task', 'query', 'mutation', 'apiKey', 'query', 'task', 'mutation', 'apiKey', 'query'] as const;
type Kind = (typeof MIX)[number];
const USERS = 4;
const SAMPLE_EVERY_MS = 5000;

/** Set once the platform is up and seeded: only then do the figures describe a run. */
let ready = false;
const report = new ScenarioReport('soak');
let platform: Platform;
let db: pg.Client;

interface SoakUser {
  token: string;
  apiKey: string;
  agentId: string;
  /** Sessions tasks run in (their answers are appended). */
  taskSessions: string[];
  /** A session for appendMessage. */
  scratchSession: string;
}
const users: SoakUser[] = [];

interface SubmittedTask {
  id: string;
  input: string;
  user: SoakUser;
  subscriber?: Promise<{ events: { sequence: number; type: string; delta: string | null; attempt: number }[]; errors: unknown[] }>;
}
const tasks: SubmittedTask[] = [];

/** Each answer that is not a clean success, with what it was. */
const failures: string[] = [];
let http5xx = 0;
const latencies: number[] = [];
const counts: Record<Kind, number> = { query: 0, task: 0, mutation: 0, apiKey: 0 };

interface Sample {
  atMs: number;
  /** name → RSS (MiB) and sockets. */
  processes: Record<string, { rssMiB: number; sockets: number }>;
}
const samples: Sample[] = [];

/** `router`, `worker1`, `worker2` (from the worker ids w1-…, w2-…), or the subgraph's name. */
function processName(p: ServiceProcess): string {
  if (p.name.startsWith('router')) return 'router';
  const worker = /^worker w(\d+)/.exec(p.name);
  return worker ? `worker${worker[1]}` : p.name;
}

function sample(startedAt: number): void {
  const processes: Sample['processes'] = {};
  for (const p of platform.processes) {
    if (p.child.exitCode !== null || p.child.pid === undefined) continue;
    try {
      processes[processName(p)] = { rssMiB: rssMib(p.child.pid), sockets: openDescriptors(p.child.pid).sockets };
    } catch {
      // exited between the check and the read
    }
  }
  samples.push({ atMs: Date.now() - startedAt, processes });
}

async function call(user: SoakUser, query: string, variables: Record<string, unknown> = {}, credential: 'token' | 'apiKey' = 'token'): Promise<RawAnswer | undefined> {
  const started = performance.now();
  let answer: RawAnswer;
  try {
    answer = await postOperation(platform.url, query, variables, credential === 'token' ? { authorization: `Bearer ${user.token}` } : { 'x-api-key': user.apiKey });
  } catch (error) {
    failures.push(`no answer: ${(error as Error).message}`);
    return undefined;
  }
  latencies.push(performance.now() - started);
  if (answer.status >= 500) http5xx += 1;
  if (answer.status !== 200 || answer.codes.length > 0) {
    failures.push(`${answer.status} ${answer.codes.join(',')}: ${query.slice(0, 60)} ${answer.text.slice(0, 200)}`);
    return undefined;
  }
  return answer;
}

const data = async (user: SoakUser, query: string, variables: Record<string, unknown> = {}) => {
  const answer = await call(user, query, variables);
  if (!answer) throw new Error(`setup call failed: ${failures.at(-1)}`);
  return answer.json!.data as any;
};

// ---- what one operation of each kind does ----

let sequence = 0;
const pick = <T>(items: readonly T[]): T => items[sequence % items.length];

const QUERIES: ((user: SoakUser) => [string, Record<string, unknown>])[] = [
  () => ['{ me { id email } }', {}],
  () => ['{ agents(first: 10) { totalCount edges { node { id name status } } } }', {}],
  (u) => ['query ($a: ID!) { agent(id: $a) { id name sessions(first: 5) { totalCount } tasks(first: 5) { totalCount edges { node { id status } } } } }', { a: u.agentId }],
  (u) => ['query ($s: ID!) { session(id: $s) { id title messages(first: 10) { totalCount edges { node { role content } } } } }', { s: pick(u.taskSessions) }],
  () => ['{ tasks(first: 10) { totalCount edges { node { id status output agent { name } } } } }', {}],
  (u) => {
    const mine = tasks.filter((t) => t.user === u);
    return mine.length > 0
      ? ['query ($t: ID!) { task(id: $t) { id status output usage { totalTokens } session { id } } }', { t: mine[mine.length - 1].id }]
      : ['{ me { id } }', {}];
  },
];

const MUTATIONS: ((user: SoakUser) => [string, Record<string, unknown>])[] = [
  (u) => ['mutation ($s: ID!, $c: String!) { appendMessage(sessionId: $s, role: USER, content: $c) { id } }', { s: u.scratchSession, c: `note ${sequence}` }],
  (u) => ['mutation ($a: ID!, $d: String) { updateAgent(id: $a, input: { description: $d }) { id updatedAt } }', { a: u.agentId, d: `soak ${sequence}` }],
];

const API_KEY_QUERIES = ['{ agents(first: 5) { totalCount } }', '{ tasks(first: 5) { totalCount edges { node { status } } } }', '{ me { id } }'];

async function runOne(kind: Kind, user: SoakUser): Promise<void> {
  counts[kind] += 1;
  if (kind === 'query') {
    const [query, variables] = pick(QUERIES)(user);
    await call(user, query, variables);
  } else if (kind === 'mutation') {
    const [query, variables] = pick(MUTATIONS)(user);
    await call(user, query, variables);
  } else if (kind === 'apiKey') {
    await call(user, pick(API_KEY_QUERIES), {}, 'apiKey');
  } else {
    const input = `soak ${sequence} ${randomUUID().slice(0, 8)} the quick brown fox jumps over the lazy dog`;
    // Half the tasks run in a session (its history is their context), half one-off.
    const sessionId = sequence % 2 === 0 ? pick(user.taskSessions) : null;
    const answer = await call(user, 'mutation ($i: RunTaskInput!) { runTask(input: $i) { id status } }', { i: { agentId: user.agentId, sessionId, input, idempotencyKey: randomUUID() } });
    const id = (answer?.json?.data as { runTask?: { id: string } } | undefined)?.runTask?.id;
    if (!id) return;
    const task: SubmittedTask = { id, input, user };
    task.subscriber = runSubscription(
      platform.url.replace(/^http/, 'ws'),
      user.token,
      'subscription ($t: ID!) { taskEvents(taskId: $t) { sequence type delta attempt } }',
      { t: id },
      120_000,
    ).then((outcome) => ({ events: outcome.events.map((e) => (e as { taskEvents: any }).taskEvents), errors: outcome.errors }));
    tasks.push(task);
  }
}

// ---- the scenario ----

beforeAll(async () => {
  if (SHORT) return;
  platform = await startPlatform('faults_soak', { workers: 2, env: { ECHO_TOKEN_DELAY_MS: '5' } });
  db = new pg.Client({ connectionString: platform.env.DATABASE_URL });
  await db.connect();
  for (let i = 0; i < USERS; i++) {
    const account = await signUp(platform.url, `soak-${i}-${randomUUID().slice(0, 8)}@example.com`);
    const draft: SoakUser = { token: account.accessToken, apiKey: '', agentId: '', taskSessions: [], scratchSession: '' };
    draft.apiKey = (await data(draft, 'mutation { createApiKey(name: "soak") { secret } }')).createApiKey.secret;
    draft.agentId = (await data(draft, 'mutation { createAgent(input: { name: "Soak", provider: "echo", model: "echo-1" }) { id } }')).createAgent.id;
    for (let s = 0; s < 3; s++) {
      const id = (await data(draft, 'mutation ($a: ID!) { createSession(agentId: $a, title: "soak") { id } }', { a: draft.agentId })).createSession.id;
      if (s < 2) draft.taskSessions.push(id);
      else draft.scratchSession = id;
    }
    users.push(draft);
  }
  report.note(`Platform: the 4 subgraphs, the router and 2 workers as separate processes; ${USERS} users, each with an echo agent, sessions and an API key.`);
  ready = true;
}, 180_000);

afterEach((context) => {
  if (context.task.result?.state === 'fail') report.count('failedTests');
});

afterAll(async () => {
  if (SHORT) return;
  await db?.end();
  await platform?.stop();
  // A setup that failed leaves figures that say nothing: marked as stopped early instead.
  await (ready ? report.write() : report.writeIfStopped());
});

/**
 * Per process over one window: mean RSS, and the fewest open sockets. Sockets come and go with the
 * requests in flight (keep-alive connections, subscribers' WebSockets, pool connections), so the
 * floor is what a leak raises.
 */
function windowFigures(from: number, to: number): Record<string, { rssMiB: number; sockets: number }> {
  const inWindow = samples.filter((s) => s.atMs >= from && s.atMs < to);
  const names = new Set(inWindow.flatMap((s) => Object.keys(s.processes)));
  const out: Record<string, { rssMiB: number; sockets: number }> = {};
  for (const name of names) {
    const values = inWindow.map((s) => s.processes[name]).filter(Boolean);
    out[name] = { rssMiB: Math.round(mean(values.map((v) => v.rssMiB)) * 10) / 10, sockets: Math.min(...values.map((v) => v.sockets)) };
  }
  return out;
}

/** Open sockets per process once nothing is in flight: after the keep-alive timeouts (5 s) have closed idle connections. */
async function idleSockets(): Promise<Record<string, number>> {
  await new Promise((r) => setTimeout(r, 6000));
  const out: Record<string, number> = {};
  for (const p of platform.processes) {
    if (p.child.exitCode === null && p.child.pid !== undefined) out[processName(p)] = openDescriptors(p.child.pid).sockets;
  }
  return out;
}
let idleBefore: Record<string, number> = {};
let idleAfter: Record<string, number> = {};

const percentile = (values: number[], p: number) => {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return Math.round(sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]);
};

describe.skipIf(SHORT)('soak', () => {
  it(`holds ${RATE_PER_SECOND} operations a second for ${SOAK_SECONDS} s: no 5xx, no error, no lost task`, async () => {
    report.set('soakSeconds', SOAK_SECONDS);
    report.set('ratePerSecond', RATE_PER_SECOND);
    if (process.env.SOAK_SECONDS) report.command(`SOAK_SECONDS=${SOAK_SECONDS} npx vitest run --config tests/faults/vitest.config.ts tests/faults/soak.faults.test.ts`);
    idleBefore = await idleSockets();
    const startedAt = Date.now();
    sample(startedAt);
    const sampler = setInterval(() => sample(startedAt), SAMPLE_EVERY_MS);
    const inFlight = new Set<Promise<void>>();
    const total = Math.round(SOAK_SECONDS * RATE_PER_SECOND);
    let late = 0;
    try {
      for (let i = 0; i < total; i++) {
        // Steady: the i-th operation starts at i / rate seconds, whatever the ones before it are doing.
        const due = startedAt + (i * 1000) / RATE_PER_SECOND;
        const wait = due - Date.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        else if (wait < -1000) late += 1;
        sequence = i;
        const operation = runOne(MIX[i % MIX.length], users[i % USERS]).catch((error: unknown) => {
          failures.push(`client error: ${(error as Error).message}`);
        });
        inFlight.add(operation);
        void operation.finally(() => inFlight.delete(operation));
      }
      await Promise.all(inFlight);
    } finally {
      clearInterval(sampler);
    }
    sample(startedAt);
    report.set('operations', total);
    report.set('operationsStartedLate', late);
    for (const [kind, count] of Object.entries(counts)) report.set(`operations.${kind}`, count);
    report.set('http5xx', http5xx);
    report.set('errors', failures.length);
    report.set('latencyP50Ms', percentile(latencies, 50));
    report.set('latencyP95Ms', percentile(latencies, 95));
    report.set('latencyP99Ms', percentile(latencies, 99));
    expect(http5xx).toBe(0);
    expect(failures.slice(0, 20), `${failures.slice(0, 20).join('\n')}\n${errorLogs(platform.processes)}`).toEqual([]);
  });

  it('ends every task SUCCEEDED with the echo of its input, seen whole by its subscriber', async () => {
    const ids = tasks.map((t) => t.id);
    // Workers finish what is queued; the subscribers complete with the final event.
    const deadline = Date.now() + 120_000;
    let rows: { id: string; status: string; output: string | null; attempts: number }[] = [];
    for (;;) {
      rows = (await db.query(`select id, status, output, attempts from task.tasks where id = any($1)`, [ids])).rows;
      const open = rows.filter((r) => r.status === 'QUEUED' || r.status === 'RUNNING').length;
      if (open === 0 || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    const byId = new Map(rows.map((r) => [r.id, r]));
    const problems: string[] = [];
    let succeeded = 0;
    let lost = 0;
    let wrongOutput = 0;
    let incoherent = 0;
    let retried = 0;
    for (const task of tasks) {
      const row = byId.get(task.id);
      if (!row || row.status !== 'SUCCEEDED') {
        lost += 1;
        problems.push(`task ${task.id}: ${row?.status ?? 'missing'}`);
        continue;
      }
      succeeded += 1;
      if (row.attempts > 1) retried += 1;
      if (row.output !== `Echo: ${task.input}`) {
        wrongOutput += 1;
        problems.push(`task ${task.id}: output ${JSON.stringify(row.output)}`);
      }
      const stream = await task.subscriber!;
      const sequences = stream.events.map((e) => e.sequence);
      let text = '';
      for (const event of stream.events) {
        if (event.type === 'STARTED') text = '';
        if (event.type === 'TOKEN') text += event.delta ?? '';
      }
      const coherent =
        stream.errors.length === 0 && sequences.every((s, i) => s === i + 1) && stream.events.at(-1)?.type === 'SUCCEEDED' && text === row.output;
      if (!coherent) {
        incoherent += 1;
        problems.push(`task ${task.id}: stream ${JSON.stringify(stream.events.map((e) => e.type)).slice(0, 200)} errors ${JSON.stringify(stream.errors).slice(0, 200)}`);
      }
    }
    report.set('tasks', tasks.length);
    report.set('succeeded', succeeded);
    report.set('lost', lost);
    report.set('wrongOutputs', wrongOutput);
    report.set('incoherentStreams', incoherent);
    report.set('retriedTasks', retried);
    report.set('subscribers', tasks.length);
    idleAfter = await idleSockets();
    expect(tasks.length).toBeGreaterThan(0);
    expect(problems.slice(0, 20), `${problems.slice(0, 20).join('\n')}\n${errorLogs(platform.processes)}`).toEqual([]);
  });

  it('keeps the RSS and open sockets of the router and the workers flat', () => {
    const durationMs = SOAK_SECONDS * 1000;
    // Warm-up: the first fifth (at most a minute); then windows of a quarter (at most a minute).
    const warmUp = Math.min(60_000, durationMs * 0.2);
    const window = Math.min(60_000, durationMs * 0.25);
    const first = windowFigures(warmUp, warmUp + window);
    const last = windowFigures(durationMs - window, durationMs + SAMPLE_EVERY_MS);
    const problems: string[] = [];
    for (const name of Object.keys(first)) {
      const before = first[name];
      const after = last[name];
      if (!after) continue;
      const key = name.replace(/[^a-z0-9]+/gi, '.');
      report.set(`${key}.rssFirstMiB`, before.rssMiB);
      report.set(`${key}.rssLastMiB`, after.rssMiB);
      report.set(`${key}.socketsFloorFirst`, before.sockets);
      report.set(`${key}.socketsFloorLast`, after.sockets);
      if (name in idleBefore) report.set(`${key}.socketsIdleBefore`, idleBefore[name]);
      if (name in idleAfter) report.set(`${key}.socketsIdleAfter`, idleAfter[name]);
      // Only the router and the workers are judged; the subgraphs are recorded for the reader.
      if (!(name === 'router' || name.startsWith('worker'))) continue;
      if (after.rssMiB > before.rssMiB + Math.max(30, before.rssMiB * 0.2)) problems.push(`${name}: RSS ${before.rssMiB} → ${after.rssMiB} MiB`);
      if (after.sockets > before.sockets + 5) problems.push(`${name}: fewest open sockets ${before.sockets} → ${after.sockets}`);
      // Once the load has drained, what stays open is what it left behind.
      if (idleAfter[name] > idleBefore[name] + 3) problems.push(`${name}: idle sockets ${idleBefore[name]} before the load, ${idleAfter[name]} after`);
    }
    report.set('samples', samples.length);
    report.note(
      `Windows compared: ${Math.round(warmUp / 1000)}–${Math.round((warmUp + window) / 1000)} s and the last ${Math.round(window / 1000)} s; ${Object.entries(last)
        .filter(([name]) => name === 'router' || name.startsWith('worker'))
        .map(([name, v]) => `${name} ${first[name]?.rssMiB} → ${v.rssMiB} MiB, at least ${first[name]?.sockets} → ${v.sockets} sockets open, ${idleBefore[name]} → ${idleAfter[name]} when idle`)
        .join('; ')}.`,
    );
    expect(problems, problems.join('\n')).toEqual([]);
  });
});
