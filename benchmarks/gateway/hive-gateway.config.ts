/**
 * Hive Gateway's configuration for our platform's supergraph only (`hive-gateway supergraph
 * <file> --jit -c <this file>`): its documented header propagation adds the static headers in
 * SUBGRAPH_HEADERS (JSON) to every subgraph fetch — the router's principal proof, which our
 * subgraphs require and which this gateway cannot sign. The public workload runs without a config.
 *
 * Plain object rather than `defineConfig` from '@graphql-hive/gateway': importing its types would
 * augment graphql's and fetch's global types for every file type-checked with this one.
 */
const headers = JSON.parse(process.env.SUBGRAPH_HEADERS ?? '{}') as Record<string, string>;

export const gatewayConfig = {
  propagateHeaders: {
    fromClientToSubgraphs: (): Record<string, string> => headers,
  },
};
