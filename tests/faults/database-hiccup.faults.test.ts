import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verify } from './support/checks.js';
import { sleep, startCluster, type Cluster } from './support/cluster.js';
import { HttpProbe } from './support/http-probe.js';
import { TaskLoad } from './support/load.js';
import { ScenarioReport, SHORT } from './support/report.js';
import { terminateDatabaseConnections } from './support/services.js';
import { tearDownScenario } from './support/teardown.js';

/**
 * Scenario 4, database hiccup (full suite only): under a steady stream of tasks with subscribers
 * and queries against both routers, terminate every PostgreSQL connection of the scenario's
 * database (`pg_terminate_backend`) three times, a second apart. The services reconnect by
 * themselves; a request caught by it fails cleanly (a GraphQL error with a code, never a 5xx or a
 * stack trace) or succeeds; no task is half-written (status, finished_at, output and lease agree),
 * every outbox row is published and no task is left stuck.
 */
const HICCUPS = 3;
let cluster: Cluster;
let load: TaskLoad | undefined;
let probe: HttpProbe | undefined;
const report = new ScenarioReport('database-hiccup');

beforeAll(async () => {
  if (SHORT) return;
  cluster = await startCluster('faults_db');
});

afterAll(() => tearDownScenario({ report: SHORT ? undefined : report, probe, load, cluster }));

describe.skipIf(SHORT)('database hiccup', () => {
  it('reconnects after its connections are terminated, fails cleanly or succeeds, and leaves no half-written task', async () => {
    load = new TaskLoad({ cluster, ratePerSecond: 3, words: 40 });
    await load.prepare();
    load.start();
    probe = new HttpProbe(() => cluster.liveRouters().map((r) => r.url), cluster.user.accessToken, '{ me { id } agents { totalCount edges { node { id sessions { totalCount } } } } tasks(first: 5) { totalCount } }');
    probe.start(4);
    await sleep(3000);

    const firstAt = Date.now();
    for (let i = 1; i <= HICCUPS; i++) {
      const terminated = await terminateDatabaseConnections(cluster.platform.env.DATABASE_URL);
      report.count('hiccups');
      report.count('connectionsTerminated', terminated);
      report.note(`hiccup ${i}: terminated ${terminated} connections`);
      await sleep(1000);
    }
    report.command(`psql -c "select pg_terminate_backend(pid) from pg_stat_activity where datname = '<scenario database>' and pid <> pg_backend_pid()"`);
    await sleep(6000);
    const lastAt = Date.now() - 3000;
    await probe.stop();
    await load.stop();
    await load.watchesDone();

    const problems: string[] = [];
    const probeCalls = probe.calls;
    const failed = probeCalls.filter((c) => c.status !== 200 || c.codes.length > 0);
    const uncoded = [...failed.filter((c) => c.status === 0 || c.codes.some((code) => code === 'NO_CODE' || code === 'NON_JSON' || code === 'STACK_TRACE'))];
    report.set('httpRequests', probeCalls.length + load.calls);
    report.set('httpFailedCleanly', failed.length - uncoded.length);
    report.set('httpFailedWithoutCode', uncoded.length);
    report.set('http5xx', probe.http5xx + load.http5xx);
    for (const [code, n] of load.errorCodes) report.set(`runTaskErrors_${code}`, n);
    const failedCodes = new Map<string, number>();
    for (const c of failed) for (const code of c.codes) failedCodes.set(code, (failedCodes.get(code) ?? 0) + 1);
    for (const [code, n] of failedCodes) report.set(`queryErrors_${code}`, n);
    for (const c of uncoded.slice(0, 5)) problems.push(`a request failed without a code: ${c.status} ${c.networkError ?? ''} ${c.codes.join(',')}`);
    if (probe.http5xx + load.http5xx > 0) problems.push(`${probe.http5xx + load.http5xx} answers with a 5xx status`);
    // Once the database is back, requests succeed again.
    const late = probeCalls.filter((c) => c.startedAt > lastAt);
    const lateFailures = late.filter((c) => c.status !== 200 || c.codes.length > 0);
    report.set('httpRequestsAfterRecovery', late.length);
    if (late.length === 0 || lateFailures.length > 0) problems.push(`${lateFailures.length} of ${late.length} requests failed ${Date.now() - firstAt > 0 ? 'after' : ''} the database came back`);

    const { problems: found } = await verify(cluster.db, load.tasks, report);
    problems.push(...found);
    report.note(problems.length === 0 ? 'every check passed' : `${problems.length} problem(s): ${problems.slice(0, 5).join('; ')}`);
    await report.write();
    expect(problems).toEqual([]);
    expect(load.unanswered).toEqual([]);
  });
});
