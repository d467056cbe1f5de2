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

/** The error classes both official SDKs export under the same names. */
export function sdkErrorClasses(sdk: SdkErrorClasses): SdkErrorClasses {
  return { APIError: sdk.APIError, APIConnectionError: sdk.APIConnectionError, APIConnectionTimeoutError: sdk.APIConnectionTimeoutError, APIUserAbortError: sdk.APIUserAbortError };
}
