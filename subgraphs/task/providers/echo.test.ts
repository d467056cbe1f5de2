import { describe, expect, it } from 'vitest';
import { createEchoProvider, echoReply, echoTokens } from './echo.js';
import { collect } from './test-server.js';
import { AbortError, type CompletionRequest } from './types.js';

const request = (input: string): CompletionRequest => ({
  model: 'echo',
  systemPrompt: 'You repeat things.',
  messages: [
    { role: 'user', content: 'first question' },
    { role: 'assistant', content: 'Echo: first question' },
    { role: 'user', content: input },
  ],
  temperature: null,
  maxTokens: null,
});

describe('echo provider', () => {
  it('echoes the last user message word by word, keeping whitespace, with an estimated usage', async () => {
    expect.assertions(4);
    const deltas: string[] = [];
    const provider = createEchoProvider({ tokenDelayMs: 0 });
    for await (const chunk of provider.stream(request('  hello,   wide\nworld '), new AbortController().signal)) {
      if (chunk.type === 'delta') deltas.push(chunk.text);
      // The system prompt and every message joined by newlines: 77 bytes → 20; the reply: 28 bytes → 7.
      else expect(chunk).toEqual({ type: 'usage', promptTokens: 20, completionTokens: 7 });
    }
    expect(deltas).toEqual(['Echo:   ', 'hello,   ', 'wide\n', 'world ']);
    expect(deltas.join('')).toBe('Echo:   hello,   wide\nworld ');
    expect(echoTokens(' leading')).toEqual([' ', 'leading']);
  });

  it('is deterministic: the same request gives the same chunks', async () => {
    expect.assertions(1);
    const provider = createEchoProvider({ tokenDelayMs: 1 });
    const run = async () => {
      const chunks = [];
      for await (const chunk of provider.stream(request('same words every time'), new AbortController().signal)) chunks.push(chunk);
      return chunks;
    };
    expect(await run()).toEqual(await run());
  });

  it('streams 10,000 tokens in well under a second with no delay', async () => {
    expect.assertions(3);
    const input = Array.from({ length: 9_999 }, (_, i) => `w${i}`).join(' ');
    const started = performance.now();
    const result = await collect(createEchoProvider({ tokenDelayMs: 0 }).stream(request(input), new AbortController().signal));
    const elapsed = performance.now() - started;
    expect(result.deltas).toBe(10_000);
    expect(result.text).toBe(echoReply(request(input)));
    expect(elapsed).toBeLessThan(3000);
  });

  it('paces tokens by the configured delay and stops promptly on abort', async () => {
    expect.assertions(4);
    const provider = createEchoProvider({ tokenDelayMs: 30 });
    const paced = performance.now();
    await collect(provider.stream(request('a b c d'), new AbortController().signal));
    expect(performance.now() - paced).toBeGreaterThanOrEqual(140);

    const slow = createEchoProvider({ tokenDelayMs: 5_000 });
    const controller = new AbortController();
    const started = performance.now();
    setTimeout(() => controller.abort(), 50);
    const result = await collect(slow.stream(request('never said'), controller.signal));
    expect(result.error).toBeInstanceOf(AbortError);
    expect(result.deltas).toBe(0);
    expect(performance.now() - started).toBeLessThan(2000);
  });

  it('notices an abort during a long zero-delay stream', async () => {
    expect.assertions(2);
    const controller = new AbortController();
    const input = Array.from({ length: 100_000 }, () => 'x').join(' ');
    setImmediate(() => controller.abort());
    const result = await collect(createEchoProvider({ tokenDelayMs: 0 }).stream(request(input), controller.signal));
    expect(result.error).toBeInstanceOf(AbortError);
    // It yields to the event loop every 256 tokens, so the abort lands long before the end.
    expect(result.deltas).toBeLessThanOrEqual(512);
  });
});
