/**
 * The worker's side of the benchmark, as its own process: appends TOKEN events to the tasks' Redis
 * event log (the product's `createRedisTaskEventLog`, one append call per event, as a worker
 * streaming tokens does) at a given rate, round-robin over the tasks. Every delta carries the
 * window and the time of the append call, so the clients measure append → receipt. The router and
 * the bare baseline read the very same channels and JSON.
 *
 * Driven over IPC by `index.ts`: `{ cmd: 'publish', window, deliveriesPerSecond, durationMs | count }`.
 */
import { Redis } from 'ioredis';
import { createRedisTaskEventLog } from '../../lib/task-events/redis.js';
import { now, stampDelta } from './latency.js';
import { serveIpc } from './processes.js';

export interface PublisherConfig {
  redisUrl: string;
  prefix: string;
  taskIds: string[];
  /** Subscribers per task: deliveries per event. */
  perTask: number;
}

export interface PublishResult {
  published: number;
  failed: number;
  /** Clock of the first append call (`now()`). */
  startedAt: number;
  /** From the first append call to the last (not to the last reply). */
  elapsedMs: number;
  /** published × perTask. */
  expectedDeliveries: number;
  /** True when appends in flight reached the cap (Redis did not keep up). */
  saturated: boolean;
}

const MAX_IN_FLIGHT = 5000;

const config = JSON.parse(process.env.BENCH_CONFIG ?? '{}') as PublisherConfig;
const redis = new Redis(config.redisUrl, { maxRetriesPerRequest: 1 });
const log = createRedisTaskEventLog({ redis, prefix: config.prefix, ownsRedis: true });
let next = 0;

async function publish(window: number, deliveriesPerSecond: number, durationMs: number | undefined, count: number | undefined): Promise<PublishResult> {
  const perMs = deliveriesPerSecond / config.perTask / 1000;
  const total = count ?? Math.max(1, Math.round(durationMs! * perMs));
  let sent = 0;
  let published = 0;
  let failed = 0;
  let inFlight = 0;
  let saturated = false;
  let lastError: unknown;
  const start = now();
  let settle: () => void = () => {};
  const settled = new Promise<void>((resolve) => (settle = resolve));
  const done = () => {
    inFlight -= 1;
    if (sent >= total && inFlight === 0) settle();
  };
  await new Promise<void>((resolve) => {
    const tick = () => {
      const due = Math.min(total, Math.floor((now() - start) * perMs) + 1);
      while (sent < due) {
        if (inFlight >= MAX_IN_FLIGHT) {
          saturated = true;
          break;
        }
        const taskId = config.taskIds[next++ % config.taskIds.length];
        sent += 1;
        inFlight += 1;
        log.append(taskId, { type: 'TOKEN', attempt: 1, delta: stampDelta(window) }).then(
          (event) => {
            if (event) published += 1;
            else failed += 1;
            done();
          },
          (error: unknown) => {
            failed += 1;
            lastError = error;
            done();
          },
        );
      }
      if (sent >= total) resolve();
      else setTimeout(tick, 1);
    };
    tick();
  });
  const elapsedMs = now() - start;
  if (inFlight > 0) await settled;
  if (failed > 0 && published === 0) throw lastError instanceof Error ? lastError : new Error('every append failed');
  return { published, failed, startedAt: start, elapsedMs, expectedDeliveries: published * config.perTask, saturated };
}

serveIpc(async (command) => {
  switch (command.cmd) {
    case 'publish':
      return publish(command.window as number, command.deliveriesPerSecond as number, command.durationMs as number | undefined, command.count as number | undefined);
    case 'close':
      await log.close();
      return null;
    default:
      throw new Error(`unknown command ${command.cmd}`);
  }
});
