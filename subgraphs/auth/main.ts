import { runService } from '../../lib/cli/run-service.js';
import { authConfigFromEnv } from './config.js';
import { startAuthSubgraph } from './server.js';

await runService('auth', authConfigFromEnv, startAuthSubgraph);
