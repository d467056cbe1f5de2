/**
 * The bare baseline's load (a child process): `concurrency` submitters each insert a task row, publish
 * it persistently to the queue and wait for the broker's confirm (one confirm per message), then
 * wait for the worker's tenth publish (SUCCEEDED) on the task's Redis channel, seen through one
 * PSUBSCRIBE, exactly as our benchmark's `redis` observer sees ours. Prints one JSON line.
 */
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import amqp from 'amqplib';
import { Redis } from 'ioredis';
import pg from 'pg';
import { BARE_QUEUE } from './bare.js';

interface BareLoadConfig {
  databaseUrl: string;
  amqpUrl: string;
  redisUrl: string;
  channelPrefix: string;
  concurrency: number;
  warmupMs: number;
  windowMs: number;
  drainMs: number;
  poolMax: number;
}

const config = JSON.parse(process.env.BENCH_CONFIG ?? '{}') as BareLoadConfig;
const pool = new pg.Pool({ connectionString: config.databaseUrl, max: config.poolMax });
const connection = await amqp.connect(config.amqpUrl);
const channel = await connection.createConfirmChannel();
const subscriber = new Redis(config.redisUrl, { enableReadyCheck: false });
const waiters = new Map<string, () => void>();
const early = new Set<string>();
subscriber.on('pmessage', (_pattern: string, name: string, message: string) => {
  if (!message.includes('"type":"SUCCEEDED"')) return;
  const id = name.slice(config.channelPrefix.length);
  const waiter = waiters.get(id);
  if (waiter) {
    waiters.delete(id);
    waiter();
  } else early.add(id);
});
await subscriber.psubscribe(`${config.channelPrefix}*`);

const ownerId = randomUUID();
const agentId = randomUUID();

function publish(id: string): Promise<void> {
  return new Promise((resolve, reject) => {
    channel.sendToQueue(BARE_QUEUE, Buffer.from(JSON.stringify({ id })), { persistent: true, messageId: id, contentType: 'application/json' }, (error) =>
      error ? reject(error instanceof Error ? error : new Error(String(error))) : resolve(),
    );
  });
}

function finished(id: string): Promise<void> {
  return new Promise((resolve) => {
    if (early.delete(id)) resolve();
    else waiters.set(id, resolve);
  });
}

const start = performance.now();
const windowStart = start + config.warmupMs;
const windowEnd = windowStart + config.windowMs;
const latencies: number[] = [];
let errors = 0;
const firstErrors: string[] = [];
let inFlight = 0;
let n = 0;

async function submitter(): Promise<void> {
  while (performance.now() < windowEnd) {
    const t0 = performance.now();
    const id = randomUUID();
    inFlight++;
    try {
      const done = finished(id);
      await pool.query(
        `insert into bare.tasks (id, owner_id, agent_id, input, status, created_at, updated_at) values ($1, $2, $3, $4, 'QUEUED', now(), now())`,
        [id, ownerId, agentId, `the quick brown fox jumps over it ${n++}`],
      );
      await publish(id);
      await done;
      const t1 = performance.now();
      if (t1 >= windowStart && t1 <= windowEnd) latencies.push(t1 - t0);
    } catch (error) {
      errors++;
      if (firstErrors.length < 5) firstErrors.push(String((error as Error).message ?? error));
    } finally {
      inFlight--;
    }
  }
}

let cpuAtStart = process.cpuUsage();
let cpuInWindow = { user: 0, system: 0 };
setTimeout(() => (cpuAtStart = process.cpuUsage()), config.warmupMs);
setTimeout(() => (cpuInWindow = process.cpuUsage(cpuAtStart)), config.warmupMs + config.windowMs);
const submitters = Array.from({ length: config.concurrency }, () => submitter());
await new Promise((r) => setTimeout(r, config.warmupMs + config.windowMs));
await Promise.race([Promise.all(submitters), new Promise((r) => setTimeout(r, config.drainMs))]);
const undrained = inFlight;

latencies.sort((a, b) => a - b);
const at = (q: number) => (latencies.length ? Math.round(latencies[Math.min(latencies.length - 1, Math.ceil(q * latencies.length) - 1)] * 10) / 10 : null);
process.stdout.write(
  `${JSON.stringify({
    completed: latencies.length,
    windowMs: config.windowMs,
    tasksPerSecond: Math.round((latencies.length / config.windowMs) * 1000 * 10) / 10,
    latency: { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: at(1) },
    errors,
    firstErrors,
    undrained,
    loadCpuMsPerTask: latencies.length ? Math.round(((cpuInWindow.user + cpuInWindow.system) / 1000 / latencies.length) * 100) / 100 : 0,
  })}\n`,
);
subscriber.disconnect();
await connection.close().catch(() => undefined);
await pool.end();
process.exit(0);
