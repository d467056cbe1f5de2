import { ConfigError } from '../config.js';
import { exitOnSignals } from '../http.js';
import { createLogger } from '../logger.js';

/**
 * The body of every service's main.ts: read the configuration, start, close cleanly on
 * SIGTERM/SIGINT; a bad configuration exits with status 2 and its one-sentence message.
 */
export async function runService<C>(
  name: string,
  readConfig: (env: Record<string, string | undefined>) => C,
  start: (config: C) => Promise<{ close: () => Promise<void> }>,
): Promise<void> {
  const log = createLogger(name);
  let config: C;
  try {
    config = readConfig(process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      log.fatal(error.message);
      process.exit(2);
    }
    throw error;
  }
  const service = await start(config);
  exitOnSignals(log, service.close);
}
