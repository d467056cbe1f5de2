/**
 * Any OpenAI-compatible Chat Completions endpoint (OpenAI, Ollama, vLLM, LM Studio, llama.cpp server)
 * through the official `openai` SDK, streamed.
 */
import type OpenAI from 'openai';
import type { ChatCompletionCreateParamsStreaming, ChatCompletionMessageParam } from 'openai/resources/chat/completions';
import { abortErrorFor } from './abort.js';
import { lazySdkProvider, sdkClientOptions, sdkErrorClasses } from './lazy-sdk.js';
import { classifyError, type ErrorContext } from './errors.js';
import { ProviderError, type CompletionRequest, type LlmProvider, type StreamChunk } from './types.js';

export const OPENAI_DEFAULT_BASE_URL = 'https://api.openai.com/v1';

export interface OpenAiProviderOptions {
  /**
   * The API root, `/v1` included (Ollama: `http://localhost:11434/v1`).
   * @default 'https://api.openai.com/v1'
   */
  baseURL?: string;
  /** Sent as a Bearer token. Local servers ignore it, but the SDK needs a non-empty string. */
  apiKey: string;
  /**
   * How long the SDK waits for the response headers before failing with a retryable error. A
   * backstop: `streamWithRetries` watches for stalls at every step of the stream.
   * @default 600000
   */
  requestTimeoutMs?: number;
}

/** OpenAI's reasoning models refuse `max_tokens` and want `max_completion_tokens` instead. */
const USES_MAX_COMPLETION_TOKENS = /^(o\d|gpt-5)/;

export function createOpenAiProvider(options: OpenAiProviderOptions): LlmProvider {
  const baseURL = options.baseURL ?? OPENAI_DEFAULT_BASE_URL;
  return lazySdkProvider(
    'openai',
    async () => {
      const sdk = await import('openai');
      return {
        client: new sdk.default(sdkClientOptions(baseURL, options.apiKey, options.requestTimeoutMs)),
        ctx: {
          provider: 'openai',
          apiKeyVar: 'OPENAI_API_KEY',
          baseUrlVar: 'OPENAI_BASE_URL',
          baseURL,
          sdk: sdkErrorClasses(sdk),
        },
      };
    },
    streamChat,
  );
}

export function chatCompletionParams(request: CompletionRequest): ChatCompletionCreateParamsStreaming {
  const messages: ChatCompletionMessageParam[] = [];
  if (request.systemPrompt) messages.push({ role: 'system', content: request.systemPrompt });
  for (const message of request.messages) messages.push({ role: message.role, content: message.content });
  const params: ChatCompletionCreateParamsStreaming = {
    model: request.model,
    messages,
    stream: true,
    stream_options: { include_usage: true },
  };
  if (request.temperature !== null) params.temperature = request.temperature;
  if (request.maxTokens !== null) {
    if (USES_MAX_COMPLETION_TOKENS.test(request.model)) params.max_completion_tokens = request.maxTokens;
    else params.max_tokens = request.maxTokens;
  }
  return params;
}

async function* streamChat(
  client: OpenAI,
  ctx: ErrorContext,
  request: CompletionRequest,
  signal: AbortSignal,
): AsyncGenerator<StreamChunk, void, undefined> {
  if (signal.aborted) throw abortErrorFor(signal);
  let finished = false;
  let usage: StreamChunk | undefined;
  try {
    const stream = await client.chat.completions.create(chatCompletionParams(request), { signal });
    for await (const chunk of stream) {
      if (typeof chunk !== 'object' || chunk === null) throw malformed(ctx);
      const choice = Array.isArray(chunk.choices) ? chunk.choices[0] : undefined;
      const text: unknown = choice?.delta?.content;
      if (text !== undefined && text !== null && typeof text !== 'string') throw malformed(ctx);
      if (text) yield { type: 'delta', text };
      if (choice?.finish_reason) finished = true;
      // Some servers report running usage on every chunk; the last report is the total.
      if (chunk.usage) {
        usage = { type: 'usage', promptTokens: chunk.usage.prompt_tokens ?? 0, completionTokens: chunk.usage.completion_tokens ?? 0 };
      }
    }
  } catch (error) {
    throw classifyError(error, signal, ctx);
  }
  // The SDK ends the iteration quietly when the request is aborted.
  if (signal.aborted) throw abortErrorFor(signal);
  if (!finished) {
    throw new ProviderError('openai: the stream ended before the answer was complete (no finish_reason)', true);
  }
  if (usage) yield usage;
}

function malformed(ctx: ErrorContext): ProviderError {
  return new ProviderError(`${ctx.provider}: malformed stream (an event did not have the expected shape)`, true);
}
