/**
 * The router as its own process: `node --import tsx router/main.ts`. A bad environment stops it
 * with one sentence (exit 2); SIGTERM/SIGINT drain in-flight requests, then it exits. With
 * ROUTER_PROCESSES above 1 this process supervises that many router workers on the same port.
 * Without REDIS_URL it starts, but warns once that its rate limits and task event log stay in this
 * process (see missingRedisWarning in server.ts).
 */
import cluster from 'node:cluster';
import { runService } from '../lib/cli/run-service.js';
import { createLogger } from '../lib/logger.js';
import { routerConfigFromEnv } from './config.js';
import { startRouter } from './server.js';
import { startRouterWorkers } from './workers.js';

await runService('router', routerConfigFromEnv, (config) =>
  config.processes > 1 && cluster.isPrimary ? startRouterWorkers(config.processes, config.port, createLogger('router', config.logLevel)) : startRouter(config),
);
