import { runService } from '../../lib/cli/run-service.js';
import { startTaskWorkerService, taskWorkerConfigFromEnv } from './worker-service.js';

await runService('worker', taskWorkerConfigFromEnv, startTaskWorkerService);
