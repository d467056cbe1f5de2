import type { Cluster } from './cluster.js';
import type { HttpProbe } from './http-probe.js';
import type { TaskLoad } from './load.js';
import type { ScenarioReport } from './report.js';

/**
 * A scenario's afterAll, each step whatever the one before did: the report (written only if the
 * scenario stopped before its checks), the probe, the load and its subscribers, the cluster.
 */
export async function tearDownScenario(parts: { report?: ScenarioReport; probe?: HttpProbe; load?: TaskLoad; cluster?: Cluster }): Promise<void> {
  await parts.report?.writeIfStopped().catch(() => undefined);
  await parts.probe?.stop().catch(() => undefined);
  await parts.load?.stop().catch(() => undefined);
  for (const task of parts.load?.tasks ?? []) task.watch?.stop();
  await parts.cluster?.stop();
}
