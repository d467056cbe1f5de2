import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verify } from './support/checks.js';
import { sleep, startCluster, type Cluster } from './support/cluster.js';
import { HttpProbe } from './support/http-probe.js';
import { TaskLoad } from './support/load.js';
import { ScenarioReport, SHORT } from './support/report.js';
import { tearDownScenario } from './support/teardown.js';

/**
 * Scenario 6, graceful shutdown (full suite only): under a steady stream of tasks with subscribers
 * spread over both routers, and queries kept in flight against the first router, SIGTERM that
 * router and a worker running a long task. Requests the router had accepted complete; its
 * subscriptions are closed with 1001 and their clients resume on the other router with
 * `afterSequence`, seeing every event once; the worker finishes what it can within its grace
 * period and hands the rest back, and every task ends SUCCEEDED. Both are replaced afterwards.
 */
let cluster: Cluster;
let load: TaskLoad | undefined;
let probe: HttpProbe | undefined;
const report = new ScenarioReport('graceful-shutdown');

beforeAll(async () => {
  if (SHORT) return;
  cluster = await startCluster('faults_shutdown');
});

afterAll(() => tearDownScenario({ report: SHORT ? undefined : report, probe, load, cluster }));

describe.skipIf(SHORT)('graceful shutdown', () => {
  it('completes accepted requests, moves subscribers to the other router with 1001, and finishes or hands back running tasks', async () => {
    load = new TaskLoad({ cluster, ratePerSecond: 4, words: 60 });
    await load.prepare();
    load.start();
    const [victimRouter] = cluster.liveRouters();
    probe = new HttpProbe(() => cluster.liveRouters().map((r) => r.url), cluster.user.accessToken);
    probe.start(6);
    // Long tasks (longer than the worker's 10 s grace period), so a running one gets handed back.
    const long = Array.from({ length: 400 }, (_, i) => `long${i}`).join(' ');
    const longTasks = await Promise.all([load.submit(long), load.submit(long), load.submit(long)]);
    await sleep(2500);

    const { rows } = await cluster.db.query<{ worker_id: string; n: number }>(
      `select worker_id, count(*)::int as n from task.tasks where status = 'RUNNING' and id = any($1) group by worker_id order by n desc`,
      [longTasks.map((t) => t!.id)],
    );
    const victimWorker = cluster.liveWorkers().find((w) => w.workerId === rows[0]?.worker_id) ?? cluster.liveWorkers()[0];
    const runningOnVictim = (await cluster.db.query(`select id from task.tasks where status = 'RUNNING' and worker_id = $1`, [victimWorker.workerId])).rows.map((r) => r.id as string);
    const watchersOnVictimRouter = load.tasks.filter((t) => t.watch && !t.watch.final).length;

    const sigtermAt = Date.now();
    victimRouter.process.child.kill('SIGTERM');
    victimWorker.process.child.kill('SIGTERM');
    report.command('kill -TERM <pid of router 1>');
    report.command('kill -TERM <pid of a worker running a long task>');
    report.note(`SIGTERM router 1 (pid ${victimRouter.process.child.pid}) and ${victimWorker.workerId} with ${runningOnVictim.length} task(s) running on it; ${watchersOnVictimRouter} subscribers following unfinished tasks`);
    const [routerExit, workerExit] = await Promise.all([
      new Promise<number | null>((resolve) => victimRouter.process.child.once('exit', (code) => resolve(code))),
      new Promise<number | null>((resolve) => victimWorker.process.child.once('exit', (code) => resolve(code))),
    ]);
    report.set('routerExitCode', routerExit ?? -1);
    report.set('workerExitCode', workerExit ?? -1);
    report.note(`router exited with ${routerExit}, worker with ${workerExit}, ${Date.now() - sigtermAt} ms after SIGTERM`);
    report.set('shutdownMs', Date.now() - sigtermAt);

    // Replace both, as an orchestrator would.
    await Promise.all([cluster.platform.startRouter(), cluster.platform.startWorker()]);
    report.count('restarts', 2);
    await sleep(3000);
    await probe.stop();
    await load.stop();
    await load.watchesDone();

    const problems: string[] = [];
    const inFlight = probe.inFlightAt(victimRouter.url, sigtermAt);
    const failedInFlight = inFlight.filter((c) => c.status !== 200 || c.codes.length > 0);
    report.set('httpRequests', probe.calls.length + load.calls);
    report.set('httpInFlightAtSigterm', inFlight.length);
    report.set('httpInFlightFailed', failedInFlight.length);
    report.set('httpRefusedAfterSigterm', probe.calls.filter((c) => c.router === victimRouter.url && c.startedAt >= sigtermAt && c.status === 0).length);
    report.set('http5xx', probe.http5xx + load.http5xx);
    for (const c of failedInFlight) problems.push(`a request in flight at SIGTERM ended ${c.status} ${c.networkError ?? ''} ${c.codes.join(',')}`);

    const { problems: found } = await verify(cluster.db, load.tasks, report);
    problems.push(...found);
    const closedGoingAway = load.tasks.filter((t) => t.watch?.closeCodes.includes(1001)).length;
    report.set('subscriptionsClosedWith1001', closedGoingAway);
    const handedBack = (await cluster.db.query(`select count(*)::int as n from task.tasks where id = any($1) and attempts > 1`, [runningOnVictim])).rows[0].n as number;
    report.set('tasksRunningOnStoppedWorker', runningOnVictim.length);
    report.set('tasksHandedBack', handedBack);
    report.set('tasksFinishedInGrace', runningOnVictim.length - handedBack);
    const notSucceeded = (await cluster.db.query(`select count(*)::int as n from task.tasks where status <> 'SUCCEEDED'`)).rows[0].n as number;
    if (notSucceeded > 0) problems.push(`${notSucceeded} tasks did not succeed`);
    if (closedGoingAway === 0) problems.push('no subscriber saw its socket closed with 1001');
    if (routerExit !== 0 || workerExit !== 0) problems.push(`exit codes: router ${routerExit}, worker ${workerExit}`);

    report.note(problems.length === 0 ? 'every check passed' : `${problems.length} problem(s): ${problems.slice(0, 5).join('; ')}`);
    await report.write();
    expect(problems).toEqual([]);
    expect(load.unanswered).toEqual([]);
    expect(runningOnVictim.length).toBeGreaterThan(0);
  });
});
