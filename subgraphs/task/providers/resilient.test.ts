import { describe, expect, it } from 'vitest';
import { backoffMs, streamWithRetries } from './resilient.js';
import { collect, delay } from './test-server.js';
import { AbortError, ProviderError, type CompletionRequest, type LlmProvider, type StreamChunk } from './types.js';

const request: CompletionRequest = { model: 'm', systemPrompt: null, messages: [{ role: 'user', content: 'hi' }], temperature: null, maxTokens: null };

type Attempt = (signal: AbortSignal) => AsyncGenerator<StreamChunk, void, undefined>;

/** A provider whose n-th call runs `attempts[n]` (the last one repeats), recording the signals it got. */
function fakeProvider(...attempts: Attempt[]): LlmProvider & { signals: AbortSignal[] } {
  const signals: AbortSignal[] = [];
  return {
    name: 'fake',
    signals,
    stream(_request, signal) {
      signals.push(signal);
      return attempts[Math.min(signals.length - 1, attempts.length - 1)](signal);
    },
  };
}

const failing = (error: ProviderError): Attempt =>
  async function* () {
    throw error;
  };

async function* succeeding(): AsyncGenerator<StreamChunk, void, undefined> {
  yield { type: 'delta', text: 'ok' };
  yield { type: 'usage', promptTokens: 1, completionTokens: 1 };
}

/** Never yields; ends only when its signal aborts (as a well-behaved provider does). */
async function* hanging(signal: AbortSignal): AsyncGenerator<StreamChunk, void, undefined> {
  await new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(new AbortError()), { once: true }));
}

const retryable = (message = 'fake: 503 server error', retryAfterMs?: number) => new ProviderError(message, true, retryAfterMs, 503);

describe('streamWithRetries', () => {
  it('backs off exponentially with jitter, reporting each retry', async () => {
    expect.assertions(5);
    const provider = fakeProvider(failing(retryable()), failing(retryable()), succeeding);
    const retries: Array<[number, number]> = [];
    const result = await collect(
      streamWithRetries(provider, request, { signal: new AbortController().signal, baseDelayMs: 40, onRetry: (_e, attempt, ms) => retries.push([attempt, ms]) }),
    );
    expect(result.text).toBe('ok');
    expect(provider.signals).toHaveLength(3);
    expect(retries.map(([attempt]) => attempt)).toEqual([1, 2]);
    expect(retries[0][1] >= 20 && retries[0][1] <= 40).toBe(true);
    expect(retries[1][1] >= 40 && retries[1][1] <= 80).toBe(true);
  });

  it('caps the backoff and a Retry-After at maxDelayMs', () => {
    expect(backoffMs(20, undefined, 500, 20_000)).toBeLessThanOrEqual(20_000);
    expect(backoffMs(20, undefined, 500, 20_000)).toBeGreaterThanOrEqual(10_000);
    expect(backoffMs(0, 60_000, 500, 20_000)).toBe(20_000);
    expect(backoffMs(0, 1_500, 500, 20_000)).toBe(1_500);
  });

  it('does not retry a final error', async () => {
    expect.assertions(2);
    const final = new ProviderError('fake: 400 bad request', false, undefined, 400);
    const provider = fakeProvider(failing(final), succeeding);
    const { error } = await collect(streamWithRetries(provider, request, { signal: new AbortController().signal, baseDelayMs: 1 }));
    expect(error).toBe(final);
    expect(provider.signals).toHaveLength(1);
  });

  it('does not retry once a chunk was yielded: the error goes to the caller as it is', async () => {
    expect.assertions(3);
    const midway = retryable('fake: connection lost');
    const provider = fakeProvider(async function* () {
      yield { type: 'delta', text: 'partial' };
      throw midway;
    }, succeeding);
    const result = await collect(streamWithRetries(provider, request, { signal: new AbortController().signal, baseDelayMs: 1 }));
    expect(result.text).toBe('partial');
    expect(result.error).toBe(midway);
    expect(provider.signals).toHaveLength(1);
  });

  it('wakes from a backoff at once when the caller aborts', async () => {
    expect.assertions(3);
    const provider = fakeProvider(failing(retryable('fake: 429 rate limited', 10_000)), succeeding);
    const controller = new AbortController();
    const started = performance.now();
    setTimeout(() => controller.abort(), 50);
    const { error } = await collect(streamWithRetries(provider, request, { signal: controller.signal }));
    expect(error).toBeInstanceOf(AbortError);
    expect(performance.now() - started).toBeLessThan(3000);
    expect(provider.signals).toHaveLength(1);
  });

  it('aborts a stalled provider through its signal and retries it', async () => {
    expect.assertions(4);
    const provider = fakeProvider(hanging, succeeding);
    const result = await collect(streamWithRetries(provider, request, { signal: new AbortController().signal, baseDelayMs: 1, stallTimeoutMs: 100 }));
    expect(result.text).toBe('ok');
    expect(provider.signals).toHaveLength(2);
    expect(provider.signals[0].aborted).toBe(true);
    expect(provider.signals[1].aborted).toBe(false);
  });

  it('reports a stall even when the provider ignores its signal', async () => {
    expect.assertions(2);
    const provider = fakeProvider(async function* () {
      await new Promise(() => undefined);
    });
    const { error } = await collect(streamWithRetries(provider, request, { signal: new AbortController().signal, maxRetries: 0, stallTimeoutMs: 100 }));
    expect((error as ProviderError).message).toBe('fake: stalled, no data for 100 ms');
    expect((error as ProviderError).retryable).toBe(true);
  });

  it('does not count the time the caller spends on a chunk as a stall', async () => {
    expect.assertions(2);
    const provider = fakeProvider(async function* () {
      for (const text of ['a', 'b', 'c']) yield { type: 'delta', text };
    });
    const seen: string[] = [];
    for await (const chunk of streamWithRetries(provider, request, { signal: new AbortController().signal, stallTimeoutMs: 100 })) {
      if (chunk.type === 'delta') seen.push(chunk.text);
      await delay(250);
    }
    expect(seen).toEqual(['a', 'b', 'c']);
    expect(provider.signals[0].aborted).toBe(false);
  });

  it('aborts the provider when the caller stops reading early', async () => {
    expect.assertions(1);
    const provider = fakeProvider(async function* (signal) {
      yield { type: 'delta', text: 'a' };
      await hanging(signal).next();
    });
    for await (const chunk of streamWithRetries(provider, request, { signal: new AbortController().signal })) {
      if (chunk.type === 'delta') break;
    }
    expect(provider.signals[0].aborted).toBe(true);
  });

  it('turns an error that is not a ProviderError into a final one', async () => {
    expect.assertions(3);
    const provider = fakeProvider(async function* () {
      throw new TypeError('x is not a function');
    });
    const { error } = await collect(streamWithRetries(provider, request, { signal: new AbortController().signal, baseDelayMs: 1 }));
    expect((error as ProviderError).message).toBe('fake: unexpected failure: x is not a function');
    expect((error as ProviderError).retryable).toBe(false);
    expect(provider.signals).toHaveLength(1);
  });

  it('handles a provider whose stream() throws before returning an iterator', async () => {
    expect.assertions(2);
    let calls = 0;
    const provider: LlmProvider = {
      name: 'fake',
      stream() {
        calls++;
        if (calls === 1) throw retryable();
        return succeeding();
      },
    };
    const result = await collect(streamWithRetries(provider, request, { signal: new AbortController().signal, baseDelayMs: 1 }));
    expect(result.text).toBe('ok');
    expect(calls).toBe(2);
  });

  it('throws AbortError at once for a signal aborted before the start', async () => {
    expect.assertions(2);
    const provider = fakeProvider(succeeding);
    const controller = new AbortController();
    controller.abort();
    const { error } = await collect(streamWithRetries(provider, request, { signal: controller.signal }));
    expect(error).toBeInstanceOf(AbortError);
    expect(provider.signals).toHaveLength(0);
  });
});
