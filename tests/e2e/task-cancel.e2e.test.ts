import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createClient, type Client as WsClient } from 'graphql-ws';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signUp } from '../support/client.js';
import { startPlatform, type Platform } from '../support/platform.js';

/**
 * What the issue asks of cancelTask and of `afterSequence`, end to end with separate processes
 * (router, four subgraphs, two workers) on the real PostgreSQL, Redis and RabbitMQ: cancelling a
 * streaming task aborts the provider's HTTP request in whichever worker process runs it within a
 * second; a subscriber that resumes past the end of a task's events completes once the task ends.
 */

/** A Chat Completions server (SSE chunks, then `[DONE]`) that records when each request's connection closed. */
async function startSlowOpenAi(chunkDelayMs: number) {
  const requests: { input: string; closedAt?: number; completed: boolean }[] = [];
  const server: Server = createServer((req, res) => {
    let raw = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => (raw += chunk));
    req.on('end', async () => {
      const body = JSON.parse(raw) as { model: string; messages: { role: string; content: string }[] };
      const input = body.messages.at(-1)?.content ?? '';
      const record: (typeof requests)[number] = { input, completed: false };
      requests.push(record);
      res.on('close', () => (record.closedAt ??= Date.now()));
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      const chunk = (delta: object, finish: string | null = null) =>
        `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 0, model: body.model, choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
      for (const word of input.match(/\S+\s*/g) ?? []) {
        if (record.closedAt) return;
        await new Promise((resolve) => setTimeout(resolve, chunkDelayMs));
        if (record.closedAt) return;
        res.write(chunk({ content: word }));
      }
      res.write(chunk({}, 'stop'));
      res.end('data: [DONE]\n\n');
      record.completed = true;
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`,
    requests,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

let platform: Platform;
let openai: Awaited<ReturnType<typeof startSlowOpenAi>>;
let alice: Awaited<ReturnType<typeof signUp>>;
const sockets: WsClient[] = [];

beforeAll(async () => {
  openai = await startSlowOpenAi(50);
  platform = await startPlatform('e2e_cancel', {
    workers: 2,
    rabbitmq: true,
    env: { RATE_LIMIT_AUTH_PER_MINUTE: '1000', OPENAI_BASE_URL: openai.baseUrl, OPENAI_API_KEY: 'test-key', ECHO_TOKEN_DELAY_MS: '20' },
  });
  alice = await signUp(platform.url, `alice-${randomUUID().slice(0, 8)}@example.com`);
}, 180_000);

afterAll(async () => {
  for (const socket of sockets) await socket.dispose();
  await platform?.stop();
  await openai?.close();
});

interface Event {
  sequence: number;
  type: string;
  delta: string | null;
}

/** Follows a task's events over graphql-ws through the router, into `events`, until the subscription completes. */
function follow(taskId: string, events: Event[], afterSequence?: number): Promise<unknown[]> {
  const client = createClient({
    url: platform.url.replace(/^http/, 'ws'),
    webSocketImpl: WebSocket,
    connectionParams: { authorization: `Bearer ${alice.accessToken}` },
    retryAttempts: 0,
  });
  sockets.push(client);
  return (async () => {
    const errors: unknown[] = [];
    try {
      for await (const result of client.iterate<{ taskEvents: Event }>({
        query: `subscription ($id: ID!, $after: Int) { taskEvents(taskId: $id, afterSequence: $after) { sequence type delta } }`,
        variables: { id: taskId, after: afterSequence ?? null },
      })) {
        if (result.errors) errors.push(...result.errors);
        if (result.data) events.push(result.data.taskEvents);
      }
    } catch (error) {
      errors.push(error);
    }
    return errors;
  })();
}

async function runTask(provider: 'openai' | 'echo', input: string): Promise<string> {
  const { createAgent } = await alice.client.data(`mutation ($i: CreateAgentInput!) { createAgent(input: $i) { id } }`, {
    i: { name: `Agent ${provider}`, provider, model: provider === 'openai' ? 'gpt-4o-mini' : 'echo-1' },
  });
  const { runTask: task } = await alice.client.data(`mutation ($a: ID!, $i: String!) { runTask(input: { agentId: $a, input: $i }) { id status } }`, { a: createAgent.id, i: input });
  expect(task.status).toBe('QUEUED');
  return task.id;
}

const until = async (condition: () => boolean, timeoutMs = 20_000) => {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
};

describe('cancelling and resuming across processes', () => {
  it("aborts the provider's HTTP request in the worker process running the task within a second of cancelTask", async () => {
    const input = `cancel-me ${Array.from({ length: 300 }, (_, i) => `w${i}`).join(' ')}`;
    const taskId = await runTask('openai', input);
    const events: Event[] = [];
    const done = follow(taskId, events);
    await until(() => events.filter((e) => e.type === 'TOKEN').length >= 3);
    const request = openai.requests.find((r) => r.input === input)!;
    expect(request.closedAt).toBeUndefined();

    const cancelledAt = Date.now();
    const { cancelTask } = await alice.client.data(`mutation ($id: ID!) { cancelTask(id: $id) { status } }`, { id: taskId });
    expect(cancelTask.status).toBe('CANCELLED');
    await until(() => request.closedAt !== undefined, 5000);
    expect(request.closedAt! - cancelledAt).toBeLessThan(1000);
    expect(request.completed).toBe(false);

    expect(await done).toEqual([]);
    expect(events.at(-1)?.type).toBe('CANCELLED');
    expect(events.map((e) => e.sequence)).toEqual(events.map((_, i) => i + 1));
    // No other attempt asked the provider again, and the task stays as cancelled.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(openai.requests.filter((r) => r.input === input)).toHaveLength(1);
    const { task } = await alice.client.data(`query ($id: ID!) { task(id: $id) { status output } }`, { id: taskId });
    expect(task).toEqual({ status: 'CANCELLED', output: null });
  }, 60_000);

  it('completes a subscription that resumes past the end of the events once the task ends, with no event', async () => {
    const taskId = await runTask('echo', Array.from({ length: 40 }, (_, i) => `e${i}`).join(' '));
    const following: Event[] = [];
    const full = follow(taskId, following);
    await until(() => following.some((e) => e.type === 'TOKEN'));
    // While the task runs, a client asks for what comes after a sequence the task never reaches.
    const past: Event[] = [];
    const resumed = follow(taskId, past, 10_000);
    expect(await full).toEqual([]);
    expect(following.at(-1)?.type).toBe('SUCCEEDED');
    const outcome = await Promise.race([resumed, new Promise((resolve) => setTimeout(resolve, 5000, 'still subscribed'))]);
    expect(outcome).toEqual([]);
    expect(past).toEqual([]);
  }, 60_000);
});
