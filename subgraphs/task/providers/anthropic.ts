/** Anthropic's Messages API through the official `@anthropic-ai/sdk`, streamed. */
import type Anthropic from '@anthropic-ai/sdk';
import type { MessageCreateParamsStreaming } from '@anthropic-ai/sdk/resources/messages';
import { abortErrorFor } from './abort.js';
import { lazySdkProvider, sdkClientOptions, sdkErrorClasses } from './lazy-sdk.js';
import { classifyError, type ErrorContext } from './errors.js';
import { ProviderError, type CompletionRequest, type LlmProvider, type StreamChunk } from './types.js';

export const ANTHROPIC_DEFAULT_BASE_URL = 'https://api.anthropic.com';

/** The Messages API requires `max_tokens`; this is sent when the agent leaves it unset. */
export const ANTHROPIC_DEFAULT_MAX_TOKENS = 1024;

export interface AnthropicProviderOptions {
  /**
   * The API root, without `/v1`.
   * @default 'https://api.anthropic.com'
   */
  baseURL?: string;
  /** Sent by the SDK as `Authorization: Bearer …` (SDK 1.x; the API also takes `x-api-key`). */
  apiKey: string;
  /**
   * How long the SDK waits for the response headers before failing with a retryable error. A
   * backstop: `streamWithRetries` watches for stalls at every step of the stream.
   * @default 600000
   */
  requestTimeoutMs?: number;
}

export function createAnthropicProvider(options: AnthropicProviderOptions): LlmProvider {
  const baseURL = options.baseURL ?? ANTHROPIC_DEFAULT_BASE_URL;
  return lazySdkProvider(
    'anthropic',
    async () => {
      const sdk = await import('@anthropic-ai/sdk');
      return {
        client: new sdk.default(sdkClientOptions(baseURL, options.apiKey, options.requestTimeoutMs)),
        ctx: {
          provider: 'anthropic',
          apiKeyVar: 'ANTHROPIC_API_KEY',
          baseUrlVar: 'ANTHROPIC_BASE_URL',
          baseURL,
          sdk: sdkErrorClasses(sdk),
        },
      };
    },
    streamMessages,
  );
}

/** The Messages API request for `request`; its temperature is left out (see below). */
export function messageParams(request: CompletionRequest): MessageCreateParamsStreaming {
  const params: MessageCreateParamsStreaming = {
    model: request.model,
    max_tokens: request.maxTokens ?? ANTHROPIC_DEFAULT_MAX_TOKENS,
    // The API refuses empty text blocks; an empty turn (say, a failed task's answer) carries nothing.
    messages: request.messages
      .filter((message) => message.content.trim() !== '')
      .map((message) => ({ role: message.role, content: message.content })),
    stream: true,
  };
  if (request.systemPrompt) params.system = request.systemPrompt;
  // `request.temperature` is not sent: this SDK speaks API version 2026-10-21, which has no sampling
  // parameters and answers 400 to any request that carries one.
  return params;
}

async function* streamMessages(
  client: Anthropic,
  ctx: ErrorContext,
  request: CompletionRequest,
  signal: AbortSignal,
): AsyncGenerator<StreamChunk, void, undefined> {
  if (signal.aborted) throw abortErrorFor(signal);
  let promptTokens: number | undefined;
  let completionTokens: number | undefined;
  let stopped = false;
  try {
    const stream = await client.messages.create(messageParams(request), { signal });
    for await (const event of stream) {
      if (typeof event !== 'object' || event === null) throw malformed(ctx);
      switch (event.type) {
        case 'message_start': {
          const usage = event.message?.usage;
          if (usage) {
            promptTokens = inputTokens(usage);
            completionTokens = usage.output_tokens ?? completionTokens;
          }
          break;
        }
        case 'content_block_delta':
          if (event.delta?.type === 'text_delta') {
            if (typeof event.delta.text !== 'string') throw malformed(ctx);
            if (event.delta.text) yield { type: 'delta', text: event.delta.text };
          }
          break;
        case 'message_delta':
          // Counts here are cumulative; input counts appear only with some features (e.g. tools).
          if (event.usage) {
            if (event.usage.input_tokens !== null && event.usage.input_tokens !== undefined) promptTokens = inputTokens(event.usage);
            completionTokens = event.usage.output_tokens ?? completionTokens;
          }
          break;
        case 'message_stop':
          stopped = true;
          break;
        default:
          // content_block_start/stop and event types added later carry no text for us.
          break;
      }
    }
  } catch (error) {
    throw classifyError(error, signal, ctx);
  }
  // The SDK ends the iteration quietly when the request is aborted.
  if (signal.aborted) throw abortErrorFor(signal);
  if (!stopped) throw new ProviderError('anthropic: the stream ended before the answer was complete (no message_stop)', true);
  if (promptTokens !== undefined || completionTokens !== undefined) {
    yield { type: 'usage', promptTokens: promptTokens ?? 0, completionTokens: completionTokens ?? 0 };
  }
}

/** Cached prompt tokens are billed apart from `input_tokens` but are still part of the prompt. */
function inputTokens(usage: {
  input_tokens: number | null;
  cache_creation_input_tokens?: number | null;
  cache_read_input_tokens?: number | null;
}): number {
  return (usage.input_tokens ?? 0) + (usage.cache_creation_input_tokens ?? 0) + (usage.cache_read_input_tokens ?? 0);
}

function malformed(ctx: ErrorContext): ProviderError {
  return new ProviderError(`${ctx.provider}: malformed stream (an event did not have the expected shape)`, true);
}
