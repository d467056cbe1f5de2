import { AbortError } from './types.js';

/** The AbortError a caller gets when `signal` ended its call, carrying the signal's reason. */
export function abortErrorFor(signal: AbortSignal): AbortError {
  return new AbortError(undefined, { cause: signal.reason });
}

/** True for the cancellation error every provider throws when the caller's signal aborted. */
export function isAbortError(error: unknown): error is AbortError {
  return error instanceof AbortError;
}

/** Waits `ms`, or rejects with AbortError as soon as `signal` aborts (no waiting out the timer). */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(abortErrorFor(signal));
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortErrorFor(signal));
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
