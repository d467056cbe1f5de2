/**
 * The router as its own process: `node --import tsx router/main.ts`. A bad environment stops it
 * with one sentence (exit 2); SIGTERM/SIGINT drain in-flight requests, then it exits.
 */
import { runService } from '../lib/cli/run-service.js';
import { routerConfigFromEnv } from './config.js';
import { startRouter } from './server.js';

await runService('router', routerConfigFromEnv, (config) => startRouter(config));
