import type { ServerResponse } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { isAbortError } from './abort.js';
import { createOpenAiProvider } from './openai.js';
import { createProviderRegistry, providerConfigFromEnv } from './registry.js';
import { streamWithRetries } from './resilient.js';
import {
  closedPort,
  collect,
  delay,
  startEventStream,
  startTestServer,
  writeEvent,
  writeJsonError,
  type Handler,
  type TestServer,
} from './test-server.js';
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

const provider = (srv: TestServer) => createOpenAiProvider({ baseURL: `${srv.origin}/v1`, apiKey: 'sk-test' });
const fast = { baseDelayMs: 10, maxDelayMs: 2_000 };

const request: CompletionRequest = {
  model: 'gpt-4o-mini',
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

function chunk(delta: Record<string, unknown>, finishReason: string | null = null) {
  return {
    id: 'chatcmpl-1',
    object: 'chat.completion.chunk',
    created: 1_700_000_000,
    model: 'gpt-4o-mini',
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
  };
}

/** Opens the stream and sends the role chunk and the first `count` words. */
function beginAnswer(res: ServerResponse, count: number): void {
  startEventStream(res);
  writeEvent(res, chunk({ role: 'assistant', content: '' }));
  for (const word of WORDS.slice(0, count)) writeEvent(res, chunk({ content: word }));
}

/** A complete answer, as OpenAI streams it with `stream_options.include_usage`. */
function answer(res: ServerResponse): void {
  beginAnswer(res, WORDS.length);
  writeEvent(res, chunk({}, 'stop'));
  writeEvent(res, { ...chunk({}), choices: [], usage: { prompt_tokens: 21, completion_tokens: 3, total_tokens: 24 } });
  writeEvent(res, '[DONE]');
  res.end();
}

const errorBody = (message: string, type: string, code: string | null = null) => ({ error: { message, type, param: null, code } });

describe('openai provider against a local Chat Completions server', () => {
  it('streams the deltas and the usage, sending the documented request', async () => {
    expect.assertions(10);
    const srv = await server((_req, res) => answer(res));
    const result = await collect(provider(srv).stream(request, new AbortController().signal));
    expect(result.error).toBeUndefined();
    expect(result.text).toBe('One two three.');
    expect(result.deltas).toBe(3);
    expect(result.usage).toEqual({ promptTokens: 21, completionTokens: 3 });
    const [sent] = srv.requests;
    expect(sent.method).toBe('POST');
    expect(sent.path).toBe('/v1/chat/completions');
    expect(sent.headers.authorization).toBe('Bearer sk-test');
    expect(sent.body).toEqual({
      model: 'gpt-4o-mini',
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Hi' },
        { role: 'assistant', content: 'Hello!' },
        { role: 'user', content: 'Say three words.' },
      ],
      stream: true,
      stream_options: { include_usage: true },
      temperature: 0.2,
      max_tokens: 50,
    });
    expect(srv.requests).toHaveLength(1);
    expect(sent.abortedByClient).toBe(false);
  });

  it('leaves out the system message and unset settings, and uses max_completion_tokens for reasoning models', async () => {
    expect.assertions(2);
    const srv = await server((_req, res) => answer(res));
    const bare = { ...request, systemPrompt: null, temperature: null, maxTokens: null, messages: [{ role: 'user' as const, content: 'Hi' }] };
    await collect(provider(srv).stream(bare, new AbortController().signal));
    await collect(provider(srv).stream({ ...bare, model: 'o3-mini', maxTokens: 100 }, new AbortController().signal));
    expect(srv.requests[0].body).toEqual({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'Hi' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    expect(srv.requests[1].body).toMatchObject({ model: 'o3-mini', max_completion_tokens: 100 });
  });

  it('yields each delta as it arrives, not when the stream ends', async () => {
    expect.assertions(2);
    const srv = await server(async (_req, res) => {
      beginAnswer(res, 1);
      await delay(1500);
      writeEvent(res, chunk({ content: ' two' }, 'stop'));
      writeEvent(res, '[DONE]');
      res.end();
    });
    const started = performance.now();
    let firstAt = 0;
    const result = await collect(provider(srv).stream(request, new AbortController().signal), (n) => {
      if (n === 1) firstAt = performance.now() - started;
    });
    expect(result.text).toBe('One two');
    expect(firstAt).toBeLessThan(1000);
  });

  it('fails at once on 401 with a message naming OPENAI_API_KEY, without retrying', async () => {
    expect.assertions(5);
    const srv = await server((_req, res) =>
      writeJsonError(res, 401, errorBody('Incorrect API key provided: sk-test.', 'invalid_request_error', 'invalid_api_key')),
    );
    const { error } = await collect(streamWithRetries(provider(srv), request, { signal: new AbortController().signal, ...fast }));
    expect(error).toBeInstanceOf(ProviderError);
    expect((error as ProviderError).message).toBe('openai: 401 invalid API key (check OPENAI_API_KEY): Incorrect API key provided: sk-test.');
    expect((error as ProviderError).retryable).toBe(false);
    expect((error as ProviderError).status).toBe(401);
    expect(srv.requests).toHaveLength(1);
  });

  it('fails at once on 400 with the provider message', async () => {
    expect.assertions(3);
    const srv = await server((_req, res) =>
      writeJsonError(res, 400, errorBody("This model's maximum context length is 128000 tokens.", 'invalid_request_error')),
    );
    const { error } = await collect(streamWithRetries(provider(srv), request, { signal: new AbortController().signal, ...fast }));
    expect((error as ProviderError).message).toBe("openai: 400 This model's maximum context length is 128000 tokens.");
    expect((error as ProviderError).retryable).toBe(false);
    expect(srv.requests).toHaveLength(1);
  });

  it('names the base URL on 404 and keeps a non-JSON error body short and readable', async () => {
    expect.assertions(3);
    const srv = await server((req, res) => {
      if (req.path.startsWith('/v1/')) return writeJsonError(res, 404, errorBody('The model `gpt-9` does not exist', 'invalid_request_error'));
      res.writeHead(502, { 'content-type': 'text/html' });
      res.end('<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>');
    });
    const notFound = await collect(provider(srv).stream({ ...request, model: 'gpt-9' }, new AbortController().signal));
    expect((notFound.error as ProviderError).message).toBe(
      'openai: 404 not found (check the model name and OPENAI_BASE_URL): The model `gpt-9` does not exist',
    );
    const gateway = await collect(
      createOpenAiProvider({ baseURL: `${srv.origin}/proxy`, apiKey: 'k' }).stream(request, new AbortController().signal),
    );
    expect((gateway.error as ProviderError).message).toBe('openai: 502 Bad Gateway');
    expect((gateway.error as ProviderError).retryable).toBe(true);
  });

  it('waits out Retry-After on 429, then succeeds', async () => {
    expect.assertions(5);
    const srv = await server((_req, res, index) => {
      if (index === 0) return writeJsonError(res, 429, errorBody('Rate limit reached', 'requests'), { 'retry-after': '1' });
      answer(res);
    });
    const retries: Array<[number, number]> = [];
    const result = await collect(
      streamWithRetries(provider(srv), request, {
        signal: new AbortController().signal,
        ...fast,
        onRetry: (error, attempt, delayMs) => {
          expect(error.message).toBe('openai: 429 rate limited: Rate limit reached');
          retries.push([attempt, delayMs]);
        },
      }),
    );
    expect(result.text).toBe('One two three.');
    expect(srv.requests).toHaveLength(2);
    expect(retries).toEqual([[1, 1000]]);
    const waited = srv.requests[1].receivedAt - srv.requests[0].receivedAt;
    expect(waited > 950 && waited < 1_800).toBe(true);
  });

  it('retries 500 twice, then succeeds', async () => {
    expect.assertions(3);
    const srv = await server((_req, res, index) => {
      if (index < 2) return writeJsonError(res, 500, errorBody('The server had an error', 'server_error'));
      answer(res);
    });
    const result = await collect(streamWithRetries(provider(srv), request, { signal: new AbortController().signal, ...fast }));
    expect(result.error).toBeUndefined();
    expect(result.text).toBe('One two three.');
    expect(srv.requests).toHaveLength(3);
  });

  it('gives up after maxRetries + 1 requests when 500 persists, with a retryable error', async () => {
    expect.assertions(4);
    const srv = await server((_req, res) => writeJsonError(res, 500, errorBody('The server had an error', 'server_error')));
    const { error } = await collect(streamWithRetries(provider(srv), request, { signal: new AbortController().signal, ...fast, maxRetries: 2 }));
    expect(srv.requests).toHaveLength(3);
    expect(error).toBeInstanceOf(ProviderError);
    expect((error as ProviderError).retryable).toBe(true);
    expect((error as ProviderError).message).toBe('openai: 500 The server had an error (gave up after 3 attempts)');
  });

  it('aborts a stream that stalls mid-way and hands the caller a retryable error, since text was already shown', async () => {
    expect.assertions(6);
    const srv = await server((_req, res) => beginAnswer(res, 2));
    const started = performance.now();
    const result = await collect(
      streamWithRetries(provider(srv), request, { signal: new AbortController().signal, ...fast, stallTimeoutMs: 300 }),
    );
    const elapsed = performance.now() - started;
    expect(result.text).toBe('One two');
    expect(result.error).toBeInstanceOf(ProviderError);
    expect((result.error as ProviderError).message).toBe('openai: stalled, no data for 300 ms');
    expect((result.error as ProviderError).retryable).toBe(true);
    expect(elapsed > 280 && elapsed < 1_500).toBe(true);
    // The request itself was aborted, not left hanging.
    await srv.requests[0].closed;
    expect(srv.requests[0].abortedByClient).toBe(true);
  });

  it('retries a request that stalls before its first chunk', async () => {
    expect.assertions(4);
    const srv = await server((_req, res, index) => {
      if (index === 0) return; // never answers
      answer(res);
    });
    const result = await collect(
      streamWithRetries(provider(srv), request, { signal: new AbortController().signal, ...fast, stallTimeoutMs: 300 }),
    );
    expect(result.text).toBe('One two three.');
    expect(srv.requests).toHaveLength(2);
    await srv.requests[0].closed;
    expect(srv.requests[0].abortedByClient).toBe(true);
    // Measured where the server saw the requests, so a little under the 300 ms the client waited.
    expect(srv.requests[1].receivedAt - srv.requests[0].receivedAt).toBeGreaterThanOrEqual(250);
  });

  it('reports a connection closed mid-stream as retryable', async () => {
    expect.assertions(4);
    const srv = await server(async (_req, res) => {
      beginAnswer(res, 2);
      await delay(50);
      res.socket?.destroy();
    });
    const result = await collect(streamWithRetries(provider(srv), request, { signal: new AbortController().signal, ...fast }));
    expect(result.text).toBe('One two');
    expect(result.error).toBeInstanceOf(ProviderError);
    expect((result.error as ProviderError).message).toBe('openai: the connection was lost mid-stream (other side closed)');
    expect((result.error as ProviderError).retryable).toBe(true);
  });

  it('reports a stream that ends without finishing as retryable', async () => {
    expect.assertions(2);
    const srv = await server((_req, res) => {
      beginAnswer(res, 2);
      res.end();
    });
    const { error } = await collect(provider(srv).stream(request, new AbortController().signal));
    expect((error as ProviderError).message).toBe('openai: the stream ended before the answer was complete (no finish_reason)');
    expect((error as ProviderError).retryable).toBe(true);
  });

  it('reports malformed SSE data as a retryable "malformed stream" ProviderError', async () => {
    expect.assertions(4);
    const srv = await server((_req, res) => {
      beginAnswer(res, 1);
      writeEvent(res, '{not json');
      res.end();
    });
    const result = await collect(provider(srv).stream(request, new AbortController().signal));
    expect(result.text).toBe('One');
    expect(result.error).toBeInstanceOf(ProviderError);
    expect((result.error as ProviderError).message).toBe('openai: malformed stream (an event was not valid JSON)');
    expect((result.error as ProviderError).retryable).toBe(true);
  });

  it('reports an error event inside the stream', async () => {
    expect.assertions(2);
    const srv = await server((_req, res) => {
      beginAnswer(res, 1);
      writeEvent(res, errorBody('The server is overloaded', 'server_error'));
      res.end();
    });
    const { error } = await collect(provider(srv).stream(request, new AbortController().signal));
    expect((error as ProviderError).message).toBe('openai: server_error in the stream: The server is overloaded');
    expect((error as ProviderError).retryable).toBe(true);
  });

  it('stops the HTTP request promptly on abort and throws AbortError, not ProviderError', async () => {
    expect.assertions(5);
    const srv = await server((_req, res) => beginAnswer(res, 2));
    const controller = new AbortController();
    let abortedAt = 0;
    const result = await collect(streamWithRetries(provider(srv), request, { signal: controller.signal, ...fast }), (n) => {
      if (n === 2) {
        abortedAt = performance.now();
        controller.abort();
      }
    });
    expect(result.error).toBeInstanceOf(AbortError);
    expect(isAbortError(result.error)).toBe(true);
    expect(result.error).not.toBeInstanceOf(ProviderError);
    const closedAt = await srv.requests[0].closed;
    expect(srv.requests[0].abortedByClient).toBe(true);
    expect(closedAt - abortedAt).toBeLessThan(1000);
  });

  it('throws AbortError from the bare provider too, and aborts when the caller stops reading', async () => {
    expect.assertions(3);
    const srv = await server((_req, res) => beginAnswer(res, 2));
    const controller = new AbortController();
    const bare = await collect(provider(srv).stream(request, controller.signal), (n) => n === 1 && controller.abort());
    expect(bare.error).toBeInstanceOf(AbortError);
    for await (const chunk of provider(srv).stream(request, new AbortController().signal)) {
      if (chunk.type === 'delta') break;
    }
    await srv.requests[1].closed;
    expect(srv.requests[1].abortedByClient).toBe(true);
    expect(srv.requests).toHaveLength(2);
  });

  it('reports an unreachable server as retryable, naming where it tried', async () => {
    expect.assertions(2);
    const port = await closedPort();
    const unreachable = createOpenAiProvider({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'k' });
    const { error } = await collect(unreachable.stream(request, new AbortController().signal));
    expect((error as ProviderError).message).toMatch(
      new RegExp(`^openai: cannot reach http://127\\.0\\.0\\.1:${port} \\(.*ECONNREFUSED.*; check OPENAI_BASE_URL\\)$`),
    );
    expect((error as ProviderError).retryable).toBe(true);
  });

  it('works keyless against a local server when only OPENAI_BASE_URL is set (Ollama-style)', async () => {
    expect.assertions(3);
    const srv = await server((_req, res) => answer(res));
    const registry = createProviderRegistry(providerConfigFromEnv({ OPENAI_BASE_URL: `${srv.origin}/v1` }));
    expect(registry.check('openai')).toBeNull();
    const result = await collect(registry.get('openai')!.stream({ ...request, model: 'llama3.1:8b' }, new AbortController().signal));
    expect(result.text).toBe('One two three.');
    expect(srv.requests[0].headers.authorization).toBe('Bearer not-needed');
  });
});
