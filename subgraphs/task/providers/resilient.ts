/**
 * Retries and stall detection around any LlmProvider. A retry is only invisible to the reader while
 * nothing has been streamed: once text went out, a failure is the caller's to handle (the worker
 * starts a new attempt of the task, which its subscribers can see).
 */
import { abortErrorFor, sleep } from './abort.js';
import { AbortError, ProviderError, type CompletionRequest, type LlmProvider, type StreamChunk } from './types.js';

export interface StreamWithRetriesOptions {
  /** Cancels the call: the HTTP request and any wait between tries end at once, with AbortError. */
  signal: AbortSignal;
  /**
   * Further tries after the first, for retryable failures before any chunk was yielded.
   * @default 3
   */
  maxRetries?: number;
  /**
   * The first backoff; each later one doubles, with jitter (half fixed, half random).
   * @default 500
   */
  baseDelayMs?: number;
  /**
   * The longest wait between tries, also capping a provider's Retry-After.
   * @default 20000
   */
  maxDelayMs?: number;
  /**
   * How long the provider may send nothing (before the first chunk or between two) before the
   * request is aborted and counted as a retryable "stalled" failure. Time the caller spends
   * consuming a chunk does not count.
   * @default 30000
   */
  stallTimeoutMs?: number;
  /** Called before each wait, with the failure, the number of the coming retry (1-based) and the wait. */
  onRetry?: (error: ProviderError, attempt: number, delayMs: number) => void;
}

/**
 * Streams `provider`'s answer to `request`, retrying retryable failures while nothing has been
 * yielded yet (exponential backoff with jitter, or the provider's Retry-After capped at
 * `maxDelayMs`). Throws AbortError when `signal` aborts; otherwise every failure is a ProviderError:
 * a final one at once, a retryable one after yielding (as it is), or the last one when the retries
 * are spent (its message then says how many attempts were made).
 */
export async function* streamWithRetries(
  provider: LlmProvider,
  request: CompletionRequest,
  options: StreamWithRetriesOptions,
): AsyncGenerator<StreamChunk, void, undefined> {
  const { signal } = options;
  const maxRetries = options.maxRetries ?? 3;
  const baseDelayMs = options.baseDelayMs ?? 500;
  const maxDelayMs = options.maxDelayMs ?? 20_000;
  const stallTimeoutMs = options.stallTimeoutMs ?? 30_000;
  let yielded = false;
  for (let attempt = 0; ; attempt++) {
    try {
      for await (const chunk of watchForStalls(provider, request, signal, stallTimeoutMs)) {
        yielded = true;
        yield chunk;
      }
      return;
    } catch (thrown) {
      if (signal.aborted) throw abortErrorFor(signal);
      const error = asProviderError(thrown, provider.name);
      if (yielded || !error.retryable) throw error;
      if (attempt >= maxRetries) {
        const tries = attempt + 1;
        throw tries === 1
          ? error
          : new ProviderError(`${error.message} (gave up after ${tries} attempts)`, true, error.retryAfterMs, error.status);
      }
      const delayMs = backoffMs(attempt, error.retryAfterMs, baseDelayMs, maxDelayMs);
      options.onRetry?.(error, attempt + 1, delayMs);
      await sleep(delayMs, signal);
    }
  }
}

/** The wait before retry number `attempt + 1`. */
export function backoffMs(attempt: number, retryAfterMs: number | undefined, baseDelayMs: number, maxDelayMs: number): number {
  if (retryAfterMs !== undefined) return Math.min(Math.max(0, retryAfterMs), maxDelayMs);
  const exponential = Math.min(baseDelayMs * 2 ** attempt, maxDelayMs);
  // Half fixed, half random: tries from many workers spread out, yet each waits a predictable minimum.
  return Math.round(exponential / 2 + Math.random() * (exponential / 2));
}

/**
 * One try: the provider's stream with a watchdog that aborts the request when no chunk arrives for
 * `stallTimeoutMs` while we are waiting for one. A single re-armed timer, not one per chunk.
 */
async function* watchForStalls(
  provider: LlmProvider,
  request: CompletionRequest,
  signal: AbortSignal,
  stallTimeoutMs: number,
): AsyncGenerator<StreamChunk, void, undefined> {
  if (signal.aborted) throw abortErrorFor(signal);
  const controller = new AbortController();
  let rejectWait: ((error: unknown) => void) | undefined;
  let waitingSince: number | undefined;
  let stall: ProviderError | undefined;
  let timer: NodeJS.Timeout | undefined;

  const onAbort = () => {
    controller.abort(signal.reason);
    rejectWait?.(abortErrorFor(signal));
  };
  const check = () => {
    const idle = waitingSince === undefined ? 0 : performance.now() - waitingSince;
    if (idle < stallTimeoutMs) {
      timer = setTimeout(check, stallTimeoutMs - idle);
      return;
    }
    stall = new ProviderError(`${provider.name}: stalled, no data for ${stallTimeoutMs} ms`, true);
    controller.abort(stall);
    rejectWait?.(stall);
  };
  signal.addEventListener('abort', onAbort, { once: true });
  timer = setTimeout(check, stallTimeoutMs);

  let iterator: AsyncIterator<StreamChunk> | undefined;
  let done = false;
  try {
    const started = provider.stream(request, controller.signal)[Symbol.asyncIterator]();
    iterator = started;
    while (true) {
      waitingSince = performance.now();
      // Settled by the provider, or early by the watchdog or the caller's abort.
      const result = await new Promise<IteratorResult<StreamChunk>>((resolve, reject) => {
        rejectWait = reject;
        started.next().then(resolve, reject);
      });
      waitingSince = undefined;
      rejectWait = undefined;
      if (result.done) {
        done = true;
        return;
      }
      yield result.value;
    }
  } catch (error) {
    if (stall) throw stall;
    if (signal.aborted) throw abortErrorFor(signal);
    throw error;
  } finally {
    clearTimeout(timer);
    signal.removeEventListener('abort', onAbort);
    if (!done) {
      // Stalled, failed, cancelled or abandoned by the caller: make sure the HTTP request ends. Not
      // awaited, since a provider stuck in next() would only run return() after that settles.
      controller.abort(stall ?? new AbortError('The stream was abandoned.'));
      const abandoned = iterator;
      void Promise.resolve()
        .then(() => abandoned?.return?.())
        .catch(() => undefined);
    }
  }
}

function asProviderError(error: unknown, provider: string): ProviderError {
  if (error instanceof ProviderError) return error;
  // Providers promise ProviderError; anything else is a bug below us, not worth retrying.
  const message = error instanceof Error ? error.message : String(error);
  return new ProviderError(`${provider}: unexpected failure: ${message}`, false);
}
