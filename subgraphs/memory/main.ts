import { runService } from '../../lib/cli/run-service.js';
import { memoryConfigFromEnv } from './config.js';
import { startMemorySubgraph } from './server.js';

await runService('memory', memoryConfigFromEnv, startMemorySubgraph);
