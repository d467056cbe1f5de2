import { ConfigError } from '../config.js';
import { exitOnSignals } from '../http.js';
import { createLogger } from '../logger.js';

/**
 * The body of every service's main.ts: read the configuration, start, close cleanly on
 * SIGTERM/SIGINT. A bad configuration (a ConfigError, found while reading the environment or while
 * starting) exits with status 2 and its one-sentence message; any other failure to start (a
 * database or broker that cannot be reached, a port in use) exits with status 1 after one fatal
 * log line, `<name> could not start: <reason>`, with the error under `err`.
 */
export async function runService<C>(
  name: string,
  readConfig: (env: Record<string, string | undefined>) => C,
  start: (config: C) => Promise<{ close: () => Promise<void> }>,
): Promise<void> {
  const log = createLogger(name);
  let service: { close: () => Promise<void> };
  try {
    service = await start(readConfig(process.env));
  } catch (error) {
    if (error instanceof ConfigError) {
      log.fatal(error.message);
      process.exit(2);
    }
    // pino's default destination flushes what it holds when the process exits, so the line is not lost.
    log.fatal({ err: error }, `${name} could not start: ${reasonOf(error)}`);
    process.exit(1);
  }
  exitOnSignals(log, service.close);
}

/**
 * One line saying why: the error's message, or for an AggregateError with none (a connect that
 * failed on every address of a host) its errors' messages.
 */
export function reasonOf(error: unknown): string {
  if (error instanceof AggregateError && !error.message) {
    const inner = error.errors.map(reasonOf).filter(Boolean);
    if (inner.length > 0) return [...new Set(inner)].join('; ');
  }
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return error.message || (typeof code === 'string' ? code : error.name);
  }
  return String(error);
}
