import { runService } from '../../lib/cli/run-service.js';
import { standaloneWorkerConfigFromEnv, startTaskWorkerService } from './worker-service.js';

await runService('worker', standaloneWorkerConfigFromEnv, startTaskWorkerService);
