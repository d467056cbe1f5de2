import type { ServerResponse } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { createAnthropicProvider } from './anthropic.js';
import { streamWithRetries } from './resilient.js';
import { collect, delay, startEventStream, startTestServer, writeEvent, writeJsonError, type Handler, type TestServer } from './test-server.js';
import { AbortError, ProviderError, type CompletionRequest } from './types.js';

const disposers: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (disposers.length > 0) await disposers.pop()!();
});

async function server(handler: Handler): Promise<TestServer> {
  const started = await startTestServer(handler);
  disposers.push(() => started.close());
  return started;
}

const provider = (srv: TestServer) => createAnthropicProvider({ baseURL: srv.origin, apiKey: 'sk-ant-test' });
const fast = { baseDelayMs: 10, maxDelayMs: 2_000 };

const request: CompletionRequest = {
  model: 'claude-sonnet-4-6',
  systemPrompt: 'Be brief.',
  messages: [
    { role: 'user', content: 'Hi' },
    { role: 'assistant', content: 'Hello!' },
    { role: 'user', content: 'Say three words.' },
  ],
  temperature: 0.2,
  maxTokens: 50,
};

const WORDS = ['One', ' two', ' three.'];

const event = (res: ServerResponse, type: string, body: Record<string, unknown> = {}) => writeEvent(res, { type, ...body }, type);

/** message_start, a thinking block (to be ignored), a text block start, and the first `count` words. */
function beginAnswer(res: ServerResponse, count: number): void {
  startEventStream(res);
  event(res, 'message_start', {
    message: {
      id: 'msg_1',
      type: 'message',
      role: 'assistant',
      content: [],
      model: 'claude-sonnet-4-6',
      stop_reason: null,
      stop_sequence: null,
      usage: { input_tokens: 25, cache_creation_input_tokens: 0, cache_read_input_tokens: 5, output_tokens: 1 },
    },
  });
  event(res, 'content_block_start', { index: 0, content_block: { type: 'thinking', thinking: '', signature: '' } });
  event(res, 'content_block_delta', { index: 0, delta: { type: 'thinking_delta', thinking: 'Three words, then.' } });
  event(res, 'content_block_stop', { index: 0 });
  event(res, 'ping');
  event(res, 'content_block_start', { index: 1, content_block: { type: 'text', text: '' } });
  for (const word of WORDS.slice(0, count)) event(res, 'content_block_delta', { index: 1, delta: { type: 'text_delta', text: word } });
}

function answer(res: ServerResponse): void {
  beginAnswer(res, WORDS.length);
  event(res, 'content_block_stop', { index: 1 });
  event(res, 'message_delta', { delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: 15 } });
  event(res, 'message_stop');
  res.end();
}

const errorBody = (type: string, message: string) => ({ type: 'error', error: { type, message }, request_id: 'req_1' });

describe('anthropic provider against a local Messages API server', () => {
  it('streams the text deltas and the usage, sending the documented request', async () => {
    expect.assertions(10);
    const srv = await server((_req, res) => answer(res));
    const result = await collect(provider(srv).stream(request, new AbortController().signal));
    expect(result.error).toBeUndefined();
    expect(result.text).toBe('One two three.');
    expect(result.deltas).toBe(3);
    // input_tokens plus cached prompt tokens; output_tokens from message_delta.
    expect(result.usage).toEqual({ promptTokens: 30, completionTokens: 15 });
    const [sent] = srv.requests;
    expect(sent.method).toBe('POST');
    expect(sent.path).toBe('/v1/messages');
    // SDK 1.x sends the key as a Bearer token (the API takes it there or in x-api-key).
    expect(sent.headers['x-api-key'] ?? sent.headers.authorization).toMatch(/^(Bearer )?sk-ant-test$/);
    expect(sent.headers['anthropic-version']).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    // No temperature: the API version this SDK speaks refuses sampling parameters.
    expect(sent.body).toEqual({
      model: 'claude-sonnet-4-6',
      system: 'Be brief.',
      messages: [
        { role: 'user', content: 'Hi' },
        { role: 'assistant', content: 'Hello!' },
        { role: 'user', content: 'Say three words.' },
      ],
      max_tokens: 50,
      stream: true,
    });
    expect(srv.requests).toHaveLength(1);
  });

  it('sends max_tokens 1024 when unset, no system when null, and drops empty turns', async () => {
    expect.assertions(1);
    const srv = await server((_req, res) => answer(res));
    const bare: CompletionRequest = {
      ...request,
      systemPrompt: null,
      maxTokens: null,
      messages: [
        { role: 'user', content: 'Hi' },
        { role: 'assistant', content: '' },
        { role: 'user', content: 'Again?' },
      ],
    };
    await collect(provider(srv).stream(bare, new AbortController().signal));
    expect(srv.requests[0].body).toEqual({
      model: 'claude-sonnet-4-6',
      messages: [
        { role: 'user', content: 'Hi' },
        { role: 'user', content: 'Again?' },
      ],
      max_tokens: 1024,
      stream: true,
    });
  });

  it('fails at once on 401 with a message naming ANTHROPIC_API_KEY, without retrying', async () => {
    expect.assertions(4);
    const srv = await server((_req, res) => writeJsonError(res, 401, errorBody('authentication_error', 'invalid x-api-key')));
    const { error } = await collect(streamWithRetries(provider(srv), request, { signal: new AbortController().signal, ...fast }));
    expect(error).toBeInstanceOf(ProviderError);
    expect((error as ProviderError).message).toBe('anthropic: 401 invalid API key (check ANTHROPIC_API_KEY): invalid x-api-key');
    expect((error as ProviderError).retryable).toBe(false);
    expect(srv.requests).toHaveLength(1);
  });

  it('fails at once on 400 with the provider message', async () => {
    expect.assertions(3);
    const srv = await server((_req, res) =>
      writeJsonError(res, 400, errorBody('invalid_request_error', 'prompt is too long: 210000 tokens > 200000 maximum')),
    );
    const { error } = await collect(streamWithRetries(provider(srv), request, { signal: new AbortController().signal, ...fast }));
    expect((error as ProviderError).message).toBe('anthropic: 400 prompt is too long: 210000 tokens > 200000 maximum');
    expect((error as ProviderError).retryable).toBe(false);
    expect(srv.requests).toHaveLength(1);
  });

  it('waits out Retry-After on 429, then succeeds', async () => {
    expect.assertions(4);
    const srv = await server((_req, res, index) => {
      if (index === 0) return writeJsonError(res, 429, errorBody('rate_limit_error', 'Number of requests has exceeded your rate limit'), { 'retry-after': '1' });
      answer(res);
    });
    const delays: number[] = [];
    const result = await collect(
      streamWithRetries(provider(srv), request, { signal: new AbortController().signal, ...fast, onRetry: (_e, _a, ms) => delays.push(ms) }),
    );
    expect(result.text).toBe('One two three.');
    expect(srv.requests).toHaveLength(2);
    expect(delays).toEqual([1000]);
    const waited = srv.requests[1].receivedAt - srv.requests[0].receivedAt;
    expect(waited > 950 && waited < 1_800).toBe(true);
  });

  it('retries 500 and 529 (overloaded), then succeeds', async () => {
    expect.assertions(3);
    const srv = await server((_req, res, index) => {
      if (index === 0) return writeJsonError(res, 500, errorBody('api_error', 'Internal server error'));
      if (index === 1) return writeJsonError(res, 529, errorBody('overloaded_error', 'Overloaded'));
      answer(res);
    });
    const messages: string[] = [];
    const result = await collect(
      streamWithRetries(provider(srv), request, { signal: new AbortController().signal, ...fast, onRetry: (e) => messages.push(e.message) }),
    );
    expect(result.text).toBe('One two three.');
    expect(srv.requests).toHaveLength(3);
    expect(messages).toEqual(['anthropic: 500 Internal server error', 'anthropic: 529 Overloaded']);
  });

  it('gives up after maxRetries + 1 requests when 500 persists, with a retryable error', async () => {
    expect.assertions(3);
    const srv = await server((_req, res) => writeJsonError(res, 500, errorBody('api_error', 'Internal server error')));
    const { error } = await collect(streamWithRetries(provider(srv), request, { signal: new AbortController().signal, ...fast, maxRetries: 3 }));
    expect(srv.requests).toHaveLength(4);
    expect((error as ProviderError).retryable).toBe(true);
    expect((error as ProviderError).message).toBe('anthropic: 500 Internal server error (gave up after 4 attempts)');
  });

  it('reports an overloaded error event inside the stream as retryable', async () => {
    expect.assertions(3);
    const srv = await server((_req, res) => {
      beginAnswer(res, 1);
      writeEvent(res, errorBody('overloaded_error', 'Overloaded'), 'error');
      res.end();
    });
    const result = await collect(provider(srv).stream(request, new AbortController().signal));
    expect(result.text).toBe('One');
    expect((result.error as ProviderError).message).toBe('anthropic: overloaded_error in the stream: Overloaded');
    expect((result.error as ProviderError).retryable).toBe(true);
  });

  it('aborts a stream that stalls mid-way and hands the caller a retryable error, since text was already shown', async () => {
    expect.assertions(4);
    const srv = await server((_req, res) => beginAnswer(res, 2));
    const result = await collect(
      streamWithRetries(provider(srv), request, { signal: new AbortController().signal, ...fast, stallTimeoutMs: 300 }),
    );
    expect(result.text).toBe('One two');
    expect((result.error as ProviderError).message).toBe('anthropic: stalled, no data for 300 ms');
    expect((result.error as ProviderError).retryable).toBe(true);
    await srv.requests[0].closed;
    expect(srv.requests[0].abortedByClient).toBe(true);
  });

  it('retries a stream that sends headers but no event before the stall timeout', async () => {
    expect.assertions(3);
    const srv = await server((_req, res, index) => {
      if (index === 0) return startEventStream(res);
      answer(res);
    });
    const result = await collect(
      streamWithRetries(provider(srv), request, { signal: new AbortController().signal, ...fast, stallTimeoutMs: 300 }),
    );
    expect(result.text).toBe('One two three.');
    expect(srv.requests).toHaveLength(2);
    expect(srv.requests[0].abortedByClient).toBe(true);
  });

  it('reports a connection closed mid-stream, and a stream cut before message_stop, as retryable', async () => {
    expect.assertions(4);
    const srv = await server(async (_req, res, index) => {
      beginAnswer(res, 2);
      await delay(50);
      if (index === 0) res.socket?.destroy();
      else res.end();
    });
    const lost = await collect(provider(srv).stream(request, new AbortController().signal));
    expect((lost.error as ProviderError).message).toBe('anthropic: the connection was lost mid-stream (other side closed)');
    expect((lost.error as ProviderError).retryable).toBe(true);
    const cut = await collect(provider(srv).stream(request, new AbortController().signal));
    expect((cut.error as ProviderError).message).toBe('anthropic: the stream ended before the answer was complete (no message_stop)');
    expect((cut.error as ProviderError).retryable).toBe(true);
  });

  it('reports malformed SSE data as a retryable "malformed stream" ProviderError', async () => {
    expect.assertions(2);
    const srv = await server((_req, res) => {
      beginAnswer(res, 1);
      writeEvent(res, '{not json', 'content_block_delta');
      res.end();
    });
    const { error } = await collect(provider(srv).stream(request, new AbortController().signal));
    expect((error as ProviderError).message).toBe('anthropic: malformed stream (an event was not valid JSON)');
    expect((error as ProviderError).retryable).toBe(true);
  });

  it('stops the HTTP request promptly on abort and throws AbortError, not ProviderError', async () => {
    expect.assertions(4);
    const srv = await server((_req, res) => beginAnswer(res, 2));
    const controller = new AbortController();
    let abortedAt = 0;
    const result = await collect(streamWithRetries(provider(srv), request, { signal: controller.signal, ...fast }), (n) => {
      if (n === 1) {
        abortedAt = performance.now();
        controller.abort();
      }
    });
    expect(result.error).toBeInstanceOf(AbortError);
    expect(result.error).not.toBeInstanceOf(ProviderError);
    const closedAt = await srv.requests[0].closed;
    expect(srv.requests[0].abortedByClient).toBe(true);
    expect(closedAt - abortedAt).toBeLessThan(1000);
  });
});
