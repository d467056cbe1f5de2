/**
 * Hive Gateway's configuration for our platform's supergraph only (`hive-gateway supergraph
 * <file> --jit -c <this file>`): its documented header propagation adds the static headers of the
 * JSON file SUBGRAPH_HEADERS_FILE (read at the first fetch) to every subgraph fetch — the router's
 * principal proof, which our subgraphs require and which this gateway cannot sign. The public
 * workload runs without a config.
 *
 * Plain object rather than `defineConfig` from '@graphql-hive/gateway': importing its types would
 * augment graphql's and fetch's global types for every file type-checked with this one.
 */
import { readFileSync } from 'node:fs';

let headers: Record<string, string> | undefined;

export const gatewayConfig = {
  propagateHeaders: {
    fromClientToSubgraphs: (): Record<string, string> =>
      (headers ??= process.env.SUBGRAPH_HEADERS_FILE ? (JSON.parse(readFileSync(process.env.SUBGRAPH_HEADERS_FILE, 'utf8')) as Record<string, string>) : {}),
  },
};
