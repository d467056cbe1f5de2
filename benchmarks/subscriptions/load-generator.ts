/**
 * The subscribers, as one process on the load core: one graphql-ws client (one WebSocket) per
 * subscriber, `perTask` of them per task, each subscribed to `taskEvents(taskId)`. Every received
 * event's delta names its publish window and time; the receipt time minus that goes into the
 * window's latency histogram (one for plain subscribers, one for those selecting the federated
 * `task` field). The same script and settings serve the router and the bare baseline.
 *
 * Driven over IPC by `index.ts`: connect, report, resubscribe, status, close.
 */
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import { LatencyHistogram, now, readStamp, type LatencySummary } from './latency.js';
import { sleep } from '../support/processes.js';
import { serveIpc } from './processes.js';
import { FEDERATED_QUERY, PLAIN_QUERY } from './workload.js';

export interface LoadGeneratorConfig {
  /** ws:// URL of the GraphQL endpoint. */
  url: string;
  /** Sent as `connectionParams.authorization` when set. */
  authorization: string | null;
  taskIds: string[];
  perTask: number;
  /** Sockets being opened and subscribed at once. */
  connectConcurrency: number;
}

export interface WindowReport {
  plain: LatencySummary;
  federated: LatencySummary;
  /** Events received for this window by all subscribers. */
  received: number;
}

export interface ConnectResult {
  subscribers: number;
  connected: number;
  failed: number;
  ms: number;
  firstError?: string;
}

export interface LoadStatus {
  open: number;
  closedUnexpectedly: number;
  /** Error results and subscription errors received. */
  errors: number;
  firstError?: string;
}

interface TaskEventData {
  taskEvents?: { sequence: number; delta: string | null; task?: unknown } | null;
}

interface Subscriber {
  index: number;
  taskId: string;
  client: Client;
  federated: boolean;
  lastSequence: number;
  stop: (() => void) | null;
}

interface WindowStats {
  plain: LatencyHistogram;
  federated: LatencyHistogram;
  received: number;
}

const config = JSON.parse(process.env.BENCH_CONFIG ?? '{}') as LoadGeneratorConfig;
const subscribers: Subscriber[] = [];
const windows = new Map<number, WindowStats>();
let open = 0;
let closedUnexpectedly = 0;
let closing = false;
let errors = 0;
let firstError: string | undefined;
/** Windows are reported in order: the last one reported. */
let lastReported = 0;

function noteError(error: unknown): void {
  errors += 1;
  firstError ??= error instanceof Error ? error.message : JSON.stringify(error)?.slice(0, 500);
}

function windowOf(id: number): WindowStats {
  let stats = windows.get(id);
  if (!stats) windows.set(id, (stats = { plain: new LatencyHistogram(), federated: new LatencyHistogram(), received: 0 }));
  return stats;
}

function subscribe(subscriber: Subscriber, query: string): void {
  subscriber.stop = subscriber.client.subscribe<TaskEventData>(
    { query, variables: { id: subscriber.taskId, after: subscriber.lastSequence || null } },
    {
      next(result) {
        const receivedAt = now();
        if (result.errors) noteError(result.errors);
        const event = result.data?.taskEvents;
        if (!event) return;
        if (event.sequence > subscriber.lastSequence) subscriber.lastSequence = event.sequence;
        const stamp = readStamp(event.delta);
        // Stragglers of a window already reported are not counted anywhere.
        if (!stamp || stamp.window <= lastReported) return;
        const stats = windowOf(stamp.window);
        stats.received += 1;
        (subscriber.federated ? stats.federated : stats.plain).record(receivedAt - stamp.at, receivedAt);
      },
      error: noteError,
      complete() {},
    },
  );
}

/** Opens one socket and subscribes; resolves once the server acknowledged connection_init. */
function connectOne(index: number): Promise<void> {
  const taskId = config.taskIds[Math.floor(index / config.perTask)];
  return new Promise<void>((resolve, reject) => {
    let acknowledged = false;
    const client = createClient({
      url: config.url,
      webSocketImpl: WebSocket,
      connectionParams: config.authorization ? { authorization: config.authorization } : undefined,
      lazy: false,
      retryAttempts: 0,
      onNonLazyError: (error) => {
        if (!acknowledged) reject(error instanceof Error ? error : new Error(`socket closed before it was acknowledged (${(error as { code?: number }).code ?? 'no code'})`));
      },
      on: {
        connected: () => {
          acknowledged = true;
          open += 1;
          const subscriber: Subscriber = { index, taskId, client, federated: false, lastSequence: 0, stop: null };
          subscribers.push(subscriber);
          subscribe(subscriber, PLAIN_QUERY);
          resolve();
        },
        closed: () => {
          if (!acknowledged) return;
          open -= 1;
          if (!closing) closedUnexpectedly += 1;
        },
      },
    });
  });
}

async function connect(): Promise<ConnectResult> {
  const total = config.taskIds.length * config.perTask;
  const started = Date.now();
  let next = 0;
  let connected = 0;
  let failed = 0;
  let connectError: string | undefined;
  // In task order, so a task's subscribers arrive together (the router shares their authorization).
  const worker = async () => {
    while (next < total) {
      const index = next++;
      try {
        await connectOne(index);
        connected += 1;
      } catch (error) {
        failed += 1;
        connectError ??= error instanceof Error ? error.message : String(error);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(config.connectConcurrency, total) }, worker));
  return { subscribers: total, connected, failed, ms: Date.now() - started, firstError: connectError };
}

/** Switches one subscriber in `every` to the federated selection, resuming after its last event. */
function resubscribe(every: number): number {
  let switched = 0;
  for (const subscriber of subscribers) {
    if (subscriber.index % every !== 0) continue;
    subscriber.stop?.();
    subscriber.federated = true;
    subscribe(subscriber, FEDERATED_QUERY);
    switched += 1;
  }
  return switched;
}

function report(id: number): WindowReport {
  const stats = windowOf(id);
  windows.delete(id);
  lastReported = Math.max(lastReported, id);
  return { plain: stats.plain.summary(), federated: stats.federated.summary(), received: stats.received };
}

serveIpc(async (command) => {
  switch (command.cmd) {
    case 'connect':
      return connect();
    case 'received':
      return windows.get(command.window as number)?.received ?? 0;
    case 'report':
      return report(command.window as number);
    case 'resubscribe':
      return resubscribe(command.every as number);
    case 'status':
      return { open, closedUnexpectedly, errors, firstError } satisfies LoadStatus;
    case 'close': {
      closing = true;
      await Promise.allSettled(subscribers.map((subscriber) => subscriber.client.dispose()));
      // Let the close frames go out before the parent stops this process.
      await sleep(200);
      return null;
    }
    default:
      throw new Error(`unknown command ${command.cmd}`);
  }
});
