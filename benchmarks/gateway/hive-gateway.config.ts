/**
 * Hive Gateway's configuration for our platform's supergraph only (`hive-gateway supergraph
 * <file> --jit -c <this file>`): its documented header propagation adds the static headers in
 * SUBGRAPH_HEADERS (JSON) to every subgraph fetch — the router's principal proof, which our
 * subgraphs require and which this gateway cannot sign. The public workload runs without a config.
 */
import { defineConfig } from '@graphql-hive/gateway';

const headers = JSON.parse(process.env.SUBGRAPH_HEADERS ?? '{}') as Record<string, string>;

export const gatewayConfig = defineConfig({
  propagateHeaders: {
    fromClientToSubgraphs: () => headers,
  },
});
