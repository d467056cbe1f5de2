/**
 * The task benchmark's load generator (a child process, pinned to the load core): `concurrency`
 * submitters each run one task at a time through the router — `runTask` over HTTP with a JWT, then
 * wait for the task's final event — and start the next as soon as it arrives. The final event is
 * observed either through the router (`ws`: a graphql-ws `taskEvents` subscription per task, the
 * way a client watches a task) or straight from the Redis event log (`redis`: one PSUBSCRIBE on
 * every task's channel). Prints one JSON line: completions and latencies in the measured window.
 */
import { Agent, request } from 'node:http';
import { performance } from 'node:perf_hooks';
import { createClient, type Client } from 'graphql-ws';
import { Redis } from 'ioredis';
import WebSocket from 'ws';

export interface LoadConfig {
  url: string;
  token: string;
  agentId: string;
  concurrency: number;
  warmupMs: number;
  windowMs: number;
  /** How long to wait for the tasks still in flight after the window (they are not counted). */
  drainMs: number;
  input: string;
  observer: 'ws' | 'redis';
  /** graphql-ws sockets the subscriptions are spread over (the router allows 100 per socket). */
  sockets: number;
  /** For the redis observer: the URL and the event log's channel prefix (`<EVENTS_PREFIX>task-events:`). */
  redisUrl?: string;
  channelPrefix?: string;
}

export interface LoadResult {
  completed: number;
  windowMs: number;
  tasksPerSecond: number;
  /** Submit → final event received, of the tasks that completed in the window, ms. */
  latency: { p50: number | null; p90: number | null; p99: number | null; max: number | null };
  /** Submit → runTask answered, ms (p50, p99). */
  submit: { p50: number | null; p99: number | null };
  failed: number;
  errors: number;
  firstErrors: string[];
  /** Tasks still in flight when the drain ended. */
  undrained: number;
  finalTypes: Record<string, number>;
  /** This load generator's own CPU per completed task over the window, ms (it has a core of its own). */
  loadCpuMsPerTask: number;
}

const config = JSON.parse(process.env.BENCH_CONFIG ?? '{}') as LoadConfig;
const url = new URL(config.url);
const agent = new Agent({ keepAlive: true, maxSockets: config.concurrency + 8 });
const RUN_TASK = 'mutation ($a: ID!, $i: String!) { runTask(input: { agentId: $a, input: $i }) { id status } }';
const TASK_EVENTS = 'subscription ($id: ID!) { taskEvents(taskId: $id) { sequence type } }';

function post(body: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        agent,
        host: url.hostname,
        port: url.port,
        path: url.pathname,
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), authorization: `Bearer ${config.token}` },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString() }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

async function runTask(n: number): Promise<string> {
  const { status, text } = await post(JSON.stringify({ query: RUN_TASK, variables: { a: config.agentId, i: `${config.input} ${n}` } }));
  const body = JSON.parse(text) as { data?: { runTask?: { id: string } }; errors?: { message: string }[] };
  if (status !== 200 || !body.data?.runTask) throw new Error(`runTask answered ${status}: ${body.errors?.[0]?.message ?? text.slice(0, 200)}`);
  return body.data.runTask.id;
}

// ---------------------------------------------------------------- observers

type Waiter = (type: string) => void;

/** Waits for a task's final event; the name of the final type. */
type Observer = (taskId: string) => Promise<string>;

function wsObserver(): { observe: Observer; close: () => Promise<void> } {
  const clients: Client[] = Array.from({ length: config.sockets }, () =>
    createClient({
      url: config.url.replace(/^http/, 'ws'),
      webSocketImpl: WebSocket,
      connectionParams: { authorization: `Bearer ${config.token}` },
      lazy: false,
      retryAttempts: 0,
    }),
  );
  let next = 0;
  return {
    observe: (taskId) =>
      new Promise((resolve, reject) => {
        const client = clients[next++ % clients.length];
        let final = '';
        let last = 'none';
        client.subscribe<{ taskEvents: { sequence: number; type: string } }>(
          { query: TASK_EVENTS, variables: { id: taskId } },
          {
            next: (result) => {
              if (result.errors) reject(new Error(result.errors[0].message));
              const type = result.data?.taskEvents.type;
              if (type) last = `${result.data!.taskEvents.sequence} ${type}`;
              if (type === 'SUCCEEDED' || type === 'FAILED' || type === 'CANCELLED') final = type;
            },
            error: (error) => reject(error instanceof Error ? error : new Error(JSON.stringify(error))),
            complete: () => (final ? resolve(final) : reject(new Error(`subscription of ${taskId} completed without a final event (last: ${last})`))),
          },
        );
      }),
    close: async () => {
      await Promise.all(clients.map((c) => c.dispose()));
    },
  };
}

async function redisObserver(): Promise<{ observe: Observer; close: () => Promise<void> }> {
  const subscriber = new Redis(config.redisUrl!, { enableReadyCheck: false });
  const waiters = new Map<string, Waiter>();
  // A final event can arrive before runTask's answer has been read.
  const early = new Map<string, string>();
  const prefix = config.channelPrefix!;
  subscriber.on('pmessage', (_pattern: string, channel: string, message: string) => {
    // Only final events matter; skip parsing the others.
    const type = message.includes('"type":"SUCCEEDED"') ? 'SUCCEEDED' : message.includes('"type":"FAILED"') ? 'FAILED' : message.includes('"type":"CANCELLED"') ? 'CANCELLED' : null;
    if (!type) return;
    const taskId = channel.slice(prefix.length);
    const waiter = waiters.get(taskId);
    if (waiter) {
      waiters.delete(taskId);
      waiter(type);
    } else early.set(taskId, type);
  });
  await subscriber.psubscribe(`${prefix}*`);
  return {
    observe: (taskId) =>
      new Promise((resolve) => {
        const type = early.get(taskId);
        if (type) {
          early.delete(taskId);
          resolve(type);
        } else waiters.set(taskId, resolve);
      }),
    close: async () => {
      subscriber.disconnect();
    },
  };
}

// ---------------------------------------------------------------- the run

const observer = config.observer === 'redis' ? await redisObserver() : wsObserver();
const start = performance.now();
const windowStart = start + config.warmupMs;
const windowEnd = windowStart + config.windowMs;
const latencies: number[] = [];
const submits: number[] = [];
const finalTypes: Record<string, number> = {};
let failed = 0;
let errors = 0;
const firstErrors: string[] = [];
let counter = 0;
let inFlight = 0;
let closing = false;

async function submitter(): Promise<void> {
  while (performance.now() < windowEnd) {
    const t0 = performance.now();
    inFlight++;
    try {
      const id = await runTask(counter++);
      const t1 = performance.now();
      const type = await observer.observe(id);
      const t2 = performance.now();
      if (t2 >= windowStart && t2 <= windowEnd) {
        finalTypes[type] = (finalTypes[type] ?? 0) + 1;
        if (type === 'SUCCEEDED') {
          latencies.push(t2 - t0);
          submits.push(t1 - t0);
        } else failed++;
      }
    } catch (error) {
      // Closing the observer after the drain ends the subscriptions still open: not the pipeline's error.
      if (closing) break;
      errors++;
      if (firstErrors.length < 5) firstErrors.push(String((error as Error).message ?? error));
      await new Promise((r) => setTimeout(r, 50));
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
// After the window, give what is in flight `drainMs` to finish, so the next run starts empty.
await new Promise((r) => setTimeout(r, config.warmupMs + config.windowMs));
await Promise.race([Promise.all(submitters), new Promise((r) => setTimeout(r, config.drainMs))]);
const undrained = inFlight;
closing = true;
await Promise.race([observer.close(), new Promise((r) => setTimeout(r, 2000))]);

latencies.sort((a, b) => a - b);
submits.sort((a, b) => a - b);
const at = (values: number[], q: number) => (values.length ? Math.round(values[Math.min(values.length - 1, Math.ceil(q * values.length) - 1)] * 10) / 10 : null);
const result: LoadResult = {
  completed: latencies.length,
  windowMs: config.windowMs,
  tasksPerSecond: Math.round((latencies.length / config.windowMs) * 1000 * 10) / 10,
  latency: { p50: at(latencies, 0.5), p90: at(latencies, 0.9), p99: at(latencies, 0.99), max: at(latencies, 1) },
  submit: { p50: at(submits, 0.5), p99: at(submits, 0.99) },
  failed,
  errors,
  firstErrors,
  undrained,
  finalTypes,
  loadCpuMsPerTask: latencies.length ? Math.round(((cpuInWindow.user + cpuInWindow.system) / 1000 / latencies.length) * 100) / 100 : 0,
};
process.stdout.write(`${JSON.stringify(result)}\n`);
process.exit(0);
