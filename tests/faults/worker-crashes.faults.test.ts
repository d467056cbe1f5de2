import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verify } from './support/checks.js';
import { sleep, startCluster, TASK_LEASE_MS, waitFor, type Cluster } from './support/cluster.js';
import { TaskLoad } from './support/load.js';
import { ScenarioReport, SHORT } from './support/report.js';
import { tearDownScenario } from './support/teardown.js';

/**
 * Scenario 1, worker crashes: under a steady stream of echo tasks, each followed by a graphql-ws
 * subscriber, SIGKILL a worker that is streaming a task (20 times; once in the short form) and
 * start a replacement each time, as an orchestrator would. Afterwards every task is terminal, none
 * succeeded twice, no session holds an answer twice, and every subscriber saw a coherent stream
 * (1..n, a retried attempt announced by STARTED with a higher attempt, the last attempt's text equal
 * to the output) that ended with the final event.
 */
const KILLS = SHORT ? 1 : 20;
let cluster: Cluster;
let load: TaskLoad | undefined;
const report = new ScenarioReport('worker-crashes');

beforeAll(async () => {
  cluster = await startCluster('faults_crash');
});

afterAll(() => tearDownScenario({ report, load, cluster }));

describe('worker crashes', () => {
  it(`loses no task and runs none twice when ${KILLS} worker(s) are killed mid-stream`, async () => {
    load = new TaskLoad({ cluster, ratePerSecond: SHORT ? 3 : 4, words: 60 });
    await load.prepare();
    load.start();
    await sleep(2000);

    for (let kill = 1; kill <= KILLS; kill++) {
      // A worker with a task that has streamed some tokens.
      const victim = await waitFor('a worker streaming a task', async () => {
        const { rows } = await cluster.db.query<{ worker_id: string }>(
          `select t.worker_id from task.tasks t where t.status = 'RUNNING' and t.started_at < now() - interval '300 milliseconds' and t.worker_id is not null`,
        );
        const streaming = new Set(rows.map((r) => r.worker_id));
        const candidates = cluster.liveWorkers().filter((w) => streaming.has(w.workerId));
        return candidates[Math.floor(Math.random() * candidates.length)];
      }, 90_000, 100);
      const running = (await cluster.db.query(`select count(*)::int as n from task.tasks where status = 'RUNNING' and worker_id = $1`, [victim.workerId])).rows[0].n;
      victim.process.child.kill('SIGKILL');
      report.count('kills');
      report.count('tasksRunningOnKilledWorkers', running);
      report.command('kill -9 <pid of a worker streaming a task>');
      report.note(`kill ${kill}: SIGKILL ${victim.workerId} (pid ${victim.process.child.pid}) with ${running} task(s) running`);
      const replacement = await cluster.platform.startWorker();
      report.count('restarts');
      report.note(`kill ${kill}: replacement ${replacement.workerId} ready`);
      await sleep(SHORT ? 500 : 1000 + Math.random() * 1500);
    }
    // Let the reaper hand the victims' tasks on (lease + a reaper period) with load still coming.
    await sleep(TASK_LEASE_MS * 2);
    await load.stop();
    report.set('runTaskCalls', load.calls);
    report.set('submissionsDeferred', load.deferred);
    report.set('http5xx', load.http5xx);
    report.set('unansweredSubmissions', load.unanswered.length);
    await load.watchesDone();

    const { problems } = await verify(cluster.db, load.tasks, report);
    report.note(problems.length === 0 ? 'every check passed' : `${problems.length} problem(s): ${problems.slice(0, 5).join('; ')}`);
    await report.write();
    expect(problems).toEqual([]);
    expect(load.http5xx).toBe(0);
    expect(load.unanswered).toEqual([]);
    expect(report.figures.kills).toBe(KILLS);
    expect(report.figures.tasksRunningOnKilledWorkers).toBeGreaterThan(0);
  });
});
