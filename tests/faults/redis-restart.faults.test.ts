import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verify } from './support/checks.js';
import { sleep, startCluster, waitFor, type Cluster } from './support/cluster.js';
import { call, TaskLoad } from './support/load.js';
import { ScenarioReport } from './support/report.js';
import { streamProblems, TaskWatch } from './support/watch.js';
import { readRedisSettings, redisAnswers, redisStartArgs, startRedis, stopRedis, type RedisServerSettings } from './support/services.js';
import { tearDownScenario } from './support/teardown.js';

/**
 * Scenario 3, Redis restart (also in the short form): under a steady stream of tasks with
 * subscribers, shut Redis down without saving (every live task event log is gone: the machine's
 * Redis keeps nothing on disk) and start it again with the settings it ran with. Subscribers whose
 * socket closes or whose subscription fails resume with `afterSequence` and must miss nothing; a
 * task that was running when its live log vanished goes on numbering after the last event its
 * worker wrote, so its subscribers still see 1..n and end with the final event; the final state
 * is in PostgreSQL. Afterwards rate limits count again and requests succeed through both routers.
 */
let cluster: Cluster;
let load: TaskLoad | undefined;
let settings: RedisServerSettings | undefined;
const report = new ScenarioReport('redis-restart');

beforeAll(async () => {
  settings = await readRedisSettings();
  cluster = await startCluster('faults_redis');
});

afterAll(async () => {
  // Whatever happened, Redis runs again before anything else is cleaned up.
  if (settings) await startRedis(settings);
  await tearDownScenario({ report, load, cluster });
});

describe('Redis restart', () => {
  it('keeps every task and every stream coherent across a Redis restart, and recovers rate limits and caches', async () => {
    load = new TaskLoad({ cluster, ratePerSecond: 3, words: 60 });
    await load.prepare();
    load.start();
    await sleep(3000);

    const running = (await cluster.db.query(`select count(*)::int as n from task.tasks where status = 'RUNNING'`)).rows[0].n as number;
    const downAt = Date.now();
    const resumed: { watch: TaskWatch; of: TaskWatch }[] = [];
    try {
      await stopRedis();
      report.command('redis-cli -p 6379 shutdown nosave');
      // Clients that reconnect while Redis is down: they resume with the last sequence they had
      // and get SERVICE_UNAVAILABLE (then try again) until the router reads the log again.
      for (const task of load.tasks.filter((t) => t.watch && !t.watch.final && t.watch.last > 0).slice(-3)) {
        const of = task.watch!;
        resumed.push({ of, watch: new TaskWatch({ routers: cluster.liveRouters, token: cluster.user.accessToken, taskId: task.id, afterSequence: of.last, routerIndex: resumed.length }) });
      }
      await sleep(1000);
    } finally {
      await startRedis(settings!);
    }
    report.command(`redis-server ${redisStartArgs(settings!).map((a) => (a === '' ? '""' : a)).join(' ')}`);
    report.count('restarts');
    report.set('redisDownMs', Date.now() - downAt);
    report.set('tasksRunningAtRestart', running);
    report.note(`Redis shut down (nosave) with ${running} task(s) running and started again after ${Date.now() - downAt} ms`);

    await sleep(5000);
    await load.stop();
    report.set('runTaskCalls', load.calls);
    report.set('http5xx', load.http5xx);
    report.set('unansweredSubmissions', load.unanswered.length);
    await load.watchesDone();
    // A worker writes back a lost live log (AppendOptions.restore): the QUEUED that opens it and
    // what the worker appended, so a subscriber following a running task misses nothing. Events
    // only another process knew (an earlier attempt's, on a worker that died) would be gone for
    // good: a subscriber that had not received them sees the sequence jump (reported as
    // streamGaps), and the task's archive misses them (archiveMismatches). Neither is a failure
    // here; every stream must still increase, end with the final event, and match the task.
    const { problems } = await verify(cluster.db, load.tasks, report, { completeArchive: false, allowGaps: true });
    await Promise.all(resumed.map((r) => r.watch.done));
    for (const { watch, of } of resumed) {
      const row = (await cluster.db.query(`select status, output from task.tasks where id = $1`, [watch.taskId])).rows[0];
      problems.push(...streamProblems(watch, row, { allowGaps: true }));
      const expected = of.events.filter((e) => e.sequence > watch.from);
      if (JSON.stringify(watch.events) !== JSON.stringify(expected)) problems.push(`${watch.taskId}: the resumed stream differs from the one that followed the task`);
      report.count('resumedDuringOutage');
      report.count('resumedDuringOutageRetries', watch.resumes);
    }

    // Rate limits count again (RateLimit-* headers come back once the limiter reaches Redis) and
    // requests succeed through every router, with a token and with a fresh API key.
    const key = await call(cluster.liveRouters()[0].url, cluster.user.accessToken, 'mutation { createApiKey(name: "after-restart") { secret } }');
    const secret: string | undefined = key.data?.createApiKey?.secret;
    if (!secret) problems.push(`createApiKey after the restart failed: ${JSON.stringify(key)}`);
    for (const router of cluster.liveRouters()) {
      for (const credential of [cluster.user.accessToken, secret ?? '']) {
        const limited = await waitFor(
          `rate-limit headers from ${router.url}`,
          async () => {
            const response = await fetch(router.url, {
              method: 'POST',
              headers: { 'content-type': 'application/json', authorization: `Bearer ${credential}` },
              body: JSON.stringify({ query: '{ me { id } agents { totalCount } }' }),
            });
            const body = (await response.json()) as { data?: { me?: { id: string } } };
            report.count('requestsAfterRestart');
            return response.status === 200 && body.data?.me?.id === cluster.user.id && response.headers.get('ratelimit-remaining') !== null;
          },
          15_000,
          250,
        ).catch(() => false);
        if (!limited) problems.push(`${router.url}: no successful, rate-limited answer after the restart`);
      }
    }
    expect(await redisAnswers()).toBe(true);
    report.note(problems.length === 0 ? 'every check passed' : `${problems.length} problem(s): ${problems.slice(0, 5).join('; ')}`);
    await report.write();
    expect(problems).toEqual([]);
    expect(load.http5xx).toBe(0);
    expect(load.unanswered).toEqual([]);
  });
});
