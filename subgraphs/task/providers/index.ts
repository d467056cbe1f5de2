/** The LLM providers a task worker streams from; see types.ts for the contract. */
export { AbortError, ProviderError, type ChatMessage, type CompletionRequest, type LlmProvider, type StreamChunk } from './types.js';
export { isAbortError } from './abort.js';
export { createOpenAiProvider, OPENAI_DEFAULT_BASE_URL, type OpenAiProviderOptions } from './openai.js';
export { createAnthropicProvider, ANTHROPIC_DEFAULT_BASE_URL, ANTHROPIC_DEFAULT_MAX_TOKENS, type AnthropicProviderOptions } from './anthropic.js';
export { createEchoProvider, echoReply, type EchoProviderOptions } from './echo.js';
export { streamWithRetries, type StreamWithRetriesOptions } from './resilient.js';
export {
  createProviderRegistry,
  providerConfigFromEnv,
  PROVIDER_NAMES,
  type ProviderConfig,
  type ProviderName,
  type ProviderRegistry,
  type ProviderRegistryOptions,
} from './registry.js';
export { contextWindow, contextWindowsFromEnv, DEFAULT_CONTEXT_WINDOW, estimateTokens, type ContextWindowOverrides } from './models.js';
