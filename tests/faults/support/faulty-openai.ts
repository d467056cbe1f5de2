import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { requestText } from '../../support/fake-openai.js';

/**
 * How the fake answers a request, chosen by the task's input: `[mode] rest of the input`.
 * `-once` modes fail the first request of an input and answer normally afterwards.
 */
export const FAULT_MODES = ['ok', '429', '429-once', '500', '500-once', 'hang-before', 'hang-mid', 'close-mid', 'malformed'] as const;
export type FaultMode = (typeof FAULT_MODES)[number];

export interface FaultyOpenAi {
  baseUrl: string;
  /** Requests received per mode. */
  requests: Map<FaultMode, number>;
  close: () => Promise<void>;
}

/**
 * An OpenAI-compatible Chat Completions endpoint that misbehaves on demand: 429 with Retry-After,
 * 500, a stream that hangs before or after its first chunks, a connection closed mid-stream, or a
 * malformed SSE event. Well-behaved answers stream "You said: <input>" word by word.
 */
export async function startFaultyOpenAi(options: { chunkDelayMs?: number; retryAfterSeconds?: number } = {}): Promise<FaultyOpenAi> {
  const requests = new Map<FaultMode, number>();
  const seen = new Map<string, number>();
  const open = new Set<ServerResponse>();
  const server: Server = createServer(async (req, res) => {
    if (req.method !== 'POST' || !req.url?.endsWith('/chat/completions')) {
      res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: 'not found' } }));
      return;
    }
    const request = JSON.parse(await requestText(req)) as { model: string; messages: { role: string; content: string }[] };
    const input = [...request.messages].reverse().find((m) => m.role === 'user')?.content ?? '';
    const mode = (/^\[([\w-]+)\]/.exec(input)?.[1] ?? 'ok') as FaultMode;
    requests.set(mode, (requests.get(mode) ?? 0) + 1);
    const times = (seen.get(input) ?? 0) + 1;
    seen.set(input, times);
    open.add(res);
    res.on('close', () => open.delete(res));

    const json = (status: number, payload: object, headers: Record<string, string> = {}) =>
      res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(payload));
    if (mode === '429' || (mode === '429-once' && times === 1)) {
      return json(429, { error: { message: 'Rate limit reached for requests', type: 'rate_limit_error' } }, { 'retry-after': String(options.retryAfterSeconds ?? 1) });
    }
    if (mode === '500' || (mode === '500-once' && times === 1)) return json(500, { error: { message: 'The server had an error while processing your request.', type: 'server_error' } });
    if (mode === 'hang-before') return; // headers never come

    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    let closed = false;
    req.on('close', () => (closed = true));
    const id = `chatcmpl-${times}`;
    const chunk = (delta: object, finishReason: string | null = null) =>
      `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created: 0, model: request.model, choices: [{ index: 0, delta, finish_reason: finishReason }] })}\n\n`;
    res.write(chunk({ role: 'assistant', content: '' }));
    const words = `You said: ${input}`.match(/\S+\s*/g) ?? [];
    for (let i = 0; i < words.length; i++) {
      if (closed) return;
      if (i === 3) {
        if (mode === 'hang-mid') return; // the stream goes silent
        if (mode === 'close-mid') return void res.socket?.destroy();
        if (mode === 'malformed') return void res.end('data: {"id": "broken", "choices": [{"delta": {"content": \n\n');
      }
      await new Promise((r) => setTimeout(r, options.chunkDelayMs ?? 10));
      if (closed) return;
      res.write(chunk({ content: words[i] }));
    }
    res.write(chunk({}, 'stop'));
    res.write(`data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created: 0, model: request.model, choices: [], usage: { prompt_tokens: 10, completion_tokens: words.length, total_tokens: 10 + words.length } })}\n\n`);
    res.end('data: [DONE]\n\n');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}/v1`,
    requests,
    close: () =>
      new Promise((resolve) => {
        for (const res of open) res.socket?.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
