import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verify } from './support/checks.js';
import { startCluster, type Cluster } from './support/cluster.js';
import { startFaultyOpenAi, type FaultMode, type FaultyOpenAi } from './support/faulty-openai.js';
import { call, TaskLoad, type SubmittedTask } from './support/load.js';
import { ScenarioReport, SHORT } from './support/report.js';
import { tearDownScenario } from './support/teardown.js';

/**
 * Scenario 5, provider faults (full suite only): tasks on an OpenAI-compatible endpoint that
 * answers 429 with Retry-After, 500, hangs before its first byte or mid-stream, closes the
 * connection mid-stream, or sends a malformed SSE event. A passing fault (the first request only)
 * is retried invisibly and the task succeeds; a lasting one is retried a bounded number of times
 * (LLM_MAX_RETRIES per attempt, TASK_MAX_ATTEMPTS attempts) and the task ends FAILED with an error
 * that says what happened. Every task is terminal and every stream coherent.
 */
const MAX_RETRIES = 2;
const MAX_ATTEMPTS = 2;
const EXPECTED: Record<FaultMode, { status: string; error?: RegExp }> = {
  ok: { status: 'SUCCEEDED' },
  '429-once': { status: 'SUCCEEDED' },
  '500-once': { status: 'SUCCEEDED' },
  '429': { status: 'FAILED', error: /429 rate limited/ },
  '500': { status: 'FAILED', error: /500/ },
  'hang-before': { status: 'FAILED', error: /stalled/ },
  'hang-mid': { status: 'FAILED', error: /stalled/ },
  'close-mid': { status: 'FAILED', error: /connection|terminated|ended before/ },
  malformed: { status: 'FAILED', error: /malformed|ended before/ },
};
let cluster: Cluster;
let fake: FaultyOpenAi;
let load: TaskLoad | undefined;
const report = new ScenarioReport('provider-faults');

beforeAll(async () => {
  if (SHORT) return;
  fake = await startFaultyOpenAi({ retryAfterSeconds: 1 });
  cluster = await startCluster('faults_llm', {
    env: {
      OPENAI_BASE_URL: fake.baseUrl,
      OPENAI_API_KEY: 'test-key',
      LLM_MAX_RETRIES: String(MAX_RETRIES),
      LLM_STALL_TIMEOUT_MS: '1500',
      TASK_MAX_ATTEMPTS: String(MAX_ATTEMPTS),
    },
  });
});

afterAll(async () => {
  await tearDownScenario({ report: SHORT ? undefined : report, load, cluster });
  await fake?.close();
});

describe.skipIf(SHORT)('provider faults', () => {
  it('retries passing faults, fails lasting ones with a reason after bounded retries, and leaves every task terminal', async () => {
    const router = cluster.liveRouters()[0];
    const agent = await call(router.url, cluster.user.accessToken, 'mutation ($i: CreateAgentInput!) { createAgent(input: $i) { id } }', {
      i: { name: 'Flaky', provider: 'openai', model: 'gpt-4o-mini' },
    });
    load = new TaskLoad({ cluster, ratePerSecond: 1, agentId: agent.data.createAgent.id, stallMs: 60_000 });
    await load.prepare();
    const byMode = new Map<FaultMode, SubmittedTask[]>();
    const modes = Object.keys(EXPECTED) as FaultMode[];
    for (const mode of modes) {
      const tasks = await Promise.all([1, 2].map((n) => load!.submit(`[${mode}] task ${n} for ${mode}: one two three four five six seven eight`)));
      byMode.set(mode, tasks.filter((t): t is SubmittedTask => t !== undefined));
    }
    report.note(`submitted ${load.tasks.length} tasks: two per fault mode (${modes.join(', ')})`);
    await load.watchesDone();
    const { problems } = await verify(cluster.db, load.tasks, report, { maxAttempts: MAX_ATTEMPTS });

    for (const [mode, tasks] of byMode) {
      const expected = EXPECTED[mode];
      for (const task of tasks) {
        const row = (await cluster.db.query(`select status, error, attempts from task.tasks where id = $1`, [task.id])).rows[0];
        report.count(`${mode}_${String(row.status).toLowerCase()}`);
        if (row.status !== expected.status) problems.push(`[${mode}] ${task.id} ended ${row.status} (${row.error}), expected ${expected.status}`);
        else if (expected.error && !expected.error.test(row.error ?? '')) problems.push(`[${mode}] ${task.id} failed with "${row.error}", expected ${expected.error}`);
        if (row.status === 'FAILED') report.note(`[${mode}] FAILED after ${row.attempts} attempt(s): ${row.error}`);
      }
      const requests = fake.requests.get(mode) ?? 0;
      report.set(`${mode}_providerRequests`, requests);
      // Bounded: at most (retries + 1) requests per attempt, MAX_ATTEMPTS attempts per task.
      if (requests > tasks.length * (MAX_RETRIES + 1) * MAX_ATTEMPTS) problems.push(`[${mode}] ${requests} provider requests for ${tasks.length} tasks: retries are not bounded`);
    }
    report.set('providerRequests', [...fake.requests.values()].reduce((a, b) => a + b, 0));
    report.note(problems.length === 0 ? 'every check passed' : `${problems.length} problem(s): ${problems.slice(0, 5).join('; ')}`);
    await report.write();
    expect(problems).toEqual([]);
    expect(load.unanswered).toEqual([]);
  });
});
