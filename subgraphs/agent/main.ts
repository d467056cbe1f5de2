import { runService } from '../../lib/cli/run-service.js';
import { agentConfigFromEnv } from './config.js';
import { startAgentSubgraph } from './server.js';

await runService('agent', agentConfigFromEnv, startAgentSubgraph);
