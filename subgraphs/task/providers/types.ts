/**
 * LLM providers behind one streaming interface. `openai` speaks the Chat Completions API of any
 * OpenAI-compatible endpoint through the official `openai` SDK; `anthropic` the Messages API through
 * `@anthropic-ai/sdk`; `echo` is offline and deterministic.
 */
export interface ChatMessage {
  role: 'user' | 'assistant';
  content: string;
}

export interface CompletionRequest {
  model: string;
  /** Sent first (OpenAI: a system message; Anthropic: the `system` parameter). */
  systemPrompt: string | null;
  /** The conversation, oldest first, ending with the task's input as a user message. */
  messages: ChatMessage[];
  temperature: number | null;
  maxTokens: number | null;
}

export type StreamChunk =
  | { type: 'delta'; text: string }
  | { type: 'usage'; promptTokens: number; completionTokens: number };

/**
 * Why a call failed, in words fit for Task.error (`"<provider>: <status> <what happened>"`, never a
 * stack), and whether trying again may help. 400/401/403/404/422 are final; 408, 409, 429, 5xx,
 * connection errors, malformed streams and stalls are retryable, with `retryAfterMs` from the
 * `retry-after-ms` / `Retry-After` headers when the provider sent one. `status` is the HTTP status
 * when there was one.
 */
export class ProviderError extends Error {
  override name = 'ProviderError';
  constructor(
    message: string,
    readonly retryable: boolean,
    readonly retryAfterMs?: number,
    readonly status?: number,
  ) {
    super(message);
  }
}

/**
 * Thrown when the caller's `signal` ended the call: a cancellation, never a provider failure, so it is
 * deliberately not a ProviderError (a worker must not mark the task FAILED or retry it). Every
 * provider and `streamWithRetries` throw this, whatever the SDK threw underneath; `cause` is
 * `signal.reason`.
 */
export class AbortError extends Error {
  override name = 'AbortError';
  constructor(message = 'The request was aborted by the caller.', options?: { cause?: unknown }) {
    super(message, options);
  }
}

export interface LlmProvider {
  readonly name: string;
  /**
   * Streams the answer: deltas as they arrive, usage once at the end when the provider reports it.
   * Aborting `signal` stops the request promptly (the HTTP request is aborted) and makes the stream
   * throw AbortError. Throws ProviderError for every other failure. Breaking out of the loop early
   * also aborts the HTTP request.
   */
  stream(request: CompletionRequest, signal: AbortSignal): AsyncIterable<StreamChunk>;
}
