/**
 * An offline provider for demos, tests and benchmarks: it answers "Echo: <last user message>",
 * streamed word by word. The same request always gives the same deltas.
 */
import { abortErrorFor, sleep } from './abort.js';
import { estimateTokens } from './models.js';
import type { CompletionRequest, LlmProvider, StreamChunk } from './types.js';

export interface EchoProviderOptions {
  /**
   * Pause before each token, to look like a real model in demos. With 0 no timer is used at all,
   * for benchmarks.
   * @default 20
   */
  tokenDelayMs?: number;
}

/** With no per-token delay, give the event loop a turn this often so an abort or I/O is not starved. */
const TOKENS_PER_EVENT_LOOP_TURN = 256;

export function createEchoProvider(options: EchoProviderOptions = {}): LlmProvider {
  const tokenDelayMs = options.tokenDelayMs ?? 20;
  return {
    name: 'echo',
    stream: (request, signal) => streamEcho(request, signal, tokenDelayMs),
  };
}

/** The whole reply the echo provider gives to `request`. */
export function echoReply(request: CompletionRequest): string {
  const lastUser = [...request.messages].reverse().find((message) => message.role === 'user');
  return `Echo: ${lastUser?.content ?? ''}`;
}

/** Words with their trailing whitespace (leading whitespace on its own), so the parts join back exactly. */
export function echoTokens(reply: string): string[] {
  return reply.match(/\s+|\S+\s*/gy) ?? [];
}

async function* streamEcho(
  request: CompletionRequest,
  signal: AbortSignal,
  tokenDelayMs: number,
): AsyncGenerator<StreamChunk, void, undefined> {
  const reply = echoReply(request);
  const tokens = echoTokens(reply);
  for (let i = 0; i < tokens.length; i++) {
    if (tokenDelayMs > 0) await sleep(tokenDelayMs, signal);
    else if (i > 0 && i % TOKENS_PER_EVENT_LOOP_TURN === 0) await new Promise<void>((resolve) => setImmediate(resolve));
    if (signal.aborted) throw abortErrorFor(signal);
    yield { type: 'delta', text: tokens[i] };
  }
  const prompt = [request.systemPrompt ?? '', ...request.messages.map((message) => message.content)].join('\n');
  yield { type: 'usage', promptTokens: estimateTokens(prompt), completionTokens: estimateTokens(reply) };
}
