import type { ErrorContext, SdkErrorClasses } from './errors.js';
import type { CompletionRequest, LlmProvider, StreamChunk } from './types.js';

/** What a provider builds once its SDK is loaded: the client and how to read the SDK's errors. */
export interface LoadedSdk<Client> {
  client: Client;
  ctx: ErrorContext;
}

/**
 * A provider whose SDK is imported by the first task that streams from it, not at start: under tsx
 * an SDK's hundreds of modules cost about a second of every start of a process that never calls
 * that provider. The import (and the client) is made once; a failed import fails every stream.
 */
export function lazySdkProvider<Client>(
  name: string,
  load: () => Promise<LoadedSdk<Client>>,
  stream: (client: Client, ctx: ErrorContext, request: CompletionRequest, signal: AbortSignal) => AsyncGenerator<StreamChunk, void, undefined>,
): LlmProvider {
  let loaded: Promise<LoadedSdk<Client>> | undefined;
  return {
    name,
    async *stream(request, signal) {
      const { client, ctx } = await (loaded ??= load());
      yield* stream(client, ctx, request, signal);
    },
  };
}

/** The client settings both official SDKs take under the same names. */
export function sdkClientOptions(baseURL: string, apiKey: string | undefined, requestTimeoutMs: number | undefined) {
  return {
    baseURL,
    apiKey,
    // Retries belong to streamWithRetries, which knows whether any text was already shown.
    maxRetries: 0,
    timeout: requestTimeoutMs ?? 600_000,
    // Failures come back as ProviderError; the SDK would also dump raw stream data to stderr.
    logLevel: 'off' as const,
  };
}

/** The error classes both official SDKs export under the same names. */
export function sdkErrorClasses(sdk: SdkErrorClasses): SdkErrorClasses {
  return { APIError: sdk.APIError, APIConnectionError: sdk.APIConnectionError, APIConnectionTimeoutError: sdk.APIConnectionTimeoutError, APIUserAbortError: sdk.APIUserAbortError };
}
