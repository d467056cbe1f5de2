import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rabbitmqctl } from '../support/rabbitmq.js';
import { verify } from './support/checks.js';
import { sleep, startCluster, waitFor, type Cluster } from './support/cluster.js';
import { TaskLoad } from './support/load.js';
import { ScenarioReport, SHORT } from './support/report.js';
import { startRabbitMq, stopRabbitMq } from './support/services.js';
import { tearDownScenario } from './support/teardown.js';

/**
 * Scenario 2, broker restart (full suite only): under a steady stream of tasks with subscribers,
 * stop the RabbitMQ application for a few seconds and start it again. Tasks submitted during the
 * outage are kept in the outbox and published once the broker is back; every runTask answered with
 * an id reaches a terminal state (none is dropped); the services and the workers reconnect and
 * consume again by themselves. The test holds the RabbitMQ restart lock of tests/support/rabbitmq.ts,
 * so no other test file loses its broker meanwhile, and starts RabbitMQ again whatever happens.
 */
let cluster: Cluster;
let load: TaskLoad | undefined;
const report = new ScenarioReport('broker-restart');

beforeAll(async () => {
  if (SHORT) return;
  cluster = await startCluster('faults_broker', { restartsBroker: true });
}, 600_000); // waits for the RabbitMQ restart lock: other test files on this machine may hold vhosts

afterAll(async () => {
  if (SHORT) return;
  // Whatever happened, RabbitMQ runs again before anything else is cleaned up.
  await startRabbitMq();
  await tearDownScenario({ report, load, cluster });
});

/** Consumers per queue of the scenario's vhost. */
async function consumers(vhost: string): Promise<Map<string, number>> {
  const out = await rabbitmqctl('list_consumers', '-q', '-p', vhost, 'queue_name');
  const counts = new Map<string, number>();
  for (const line of out.split('\n').map((l) => l.trim()).filter(Boolean)) counts.set(line, (counts.get(line) ?? 0) + 1);
  return counts;
}

describe.skipIf(SHORT)('broker restart', () => {
  it('keeps every submitted task and finishes it after RabbitMQ restarts; services reconnect by themselves', async () => {
    const vhost = decodeURIComponent(new URL(cluster.platform.env.AMQP_URL).pathname.slice(1));
    const before = await consumers(vhost);
    load = new TaskLoad({ cluster, ratePerSecond: 3, words: 40 });
    await load.prepare();
    load.start();
    await sleep(3000);

    const submittedBefore = load.tasks.length;
    const stoppedAt = Date.now();
    try {
      await stopRabbitMq();
      report.command('rabbitmqctl stop_app');
      await sleep(5000);
    } finally {
      await startRabbitMq();
    }
    report.command('rabbitmqctl start_app');
    report.command('rabbitmqctl await_startup');
    const outageMs = Date.now() - stoppedAt;
    const submittedDuring = load.tasks.length - submittedBefore;
    report.count('restarts');
    report.set('brokerDownMs', outageMs);
    report.set('tasksSubmittedDuringOutage', submittedDuring);
    report.note(`RabbitMQ stopped for ${outageMs} ms; ${submittedDuring} task(s) submitted meanwhile`);

    // Every process consumes again by itself: the workers' work and dead-letter queues, memory's events.
    const resumed = await waitFor(
      'every consumer to come back',
      async () => {
        const now = await consumers(vhost);
        return [...before].every(([queue, n]) => (now.get(queue) ?? 0) >= n) ? now : false;
      },
      60_000,
      1000,
    ).catch(() => undefined);
    report.set('consumersBefore', [...before.values()].reduce((a, b) => a + b, 0));
    report.set('consumersAfter', resumed ? [...resumed.values()].reduce((a, b) => a + b, 0) : 0);

    await sleep(5000);
    await load.stop();
    report.set('runTaskCalls', load.calls);
    report.set('http5xx', load.http5xx);
    report.set('unansweredSubmissions', load.unanswered.length);
    for (const [code, n] of load.errorCodes) report.set(`runTaskErrors_${code}`, n);
    await load.watchesDone();
    const { problems } = await verify(cluster.db, load.tasks, report);
    if (!resumed) problems.push(`consumers did not come back: before ${JSON.stringify([...before])}`);
    const notSucceeded = (await cluster.db.query(`select count(*)::int as n from task.tasks where status <> 'SUCCEEDED'`)).rows[0].n as number;
    if (notSucceeded > 0) problems.push(`${notSucceeded} tasks did not succeed`);

    report.note(problems.length === 0 ? 'every check passed' : `${problems.length} problem(s): ${problems.slice(0, 5).join('; ')}`);
    await report.write();
    expect(problems).toEqual([]);
    expect(load.http5xx).toBe(0);
    expect(load.unanswered).toEqual([]);
    expect(submittedDuring).toBeGreaterThan(0);
  });
});
