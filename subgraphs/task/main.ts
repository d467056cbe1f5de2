import { runService } from '../../lib/cli/run-service.js';
import { taskConfigFromEnv } from './config.js';
import { startTaskSubgraph } from './server.js';

await runService('task', taskConfigFromEnv, startTaskSubgraph);
