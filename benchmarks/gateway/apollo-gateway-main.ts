/**
 * Contender "bare @apollo/gateway": ApolloGateway over a supergraph file behind @apollo/server's
 * standalone HTTP server, default settings, as upstream's benchmark runs it.
 *
 * Environment: SUPERGRAPH_PATH, PORT, PROCESSES (node:cluster workers when above 1; default 1),
 * SUBGRAPH_HEADERS_FILE (a JSON object of headers added to every subgraph fetch through the
 * gateway's own data-source hook, read at the first fetch: our platform's subgraphs want the
 * router's proof, which this gateway cannot make, and it exists only once the data is seeded).
 */
// tsx turns on source-mapped stack traces; upstream runs this gateway as plain JavaScript, and its
// HTTP client (agent-base) reads `new Error().stack` on every fetch, so keep that as cheap as there.
process.setSourceMapsEnabled(false);

import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import { ApolloGateway, RemoteGraphQLDataSource } from '@apollo/gateway';
import { ApolloServer } from '@apollo/server';
import { startStandaloneServer } from '@apollo/server/standalone';

const processes = Number(process.env.PROCESSES ?? '1');
if (cluster.isPrimary && processes > 1) {
  for (let i = 0; i < processes; i++) cluster.fork();
  cluster.on('exit', (_worker, code) => {
    console.error(`a gateway worker exited with ${code}`);
    process.exit(1);
  });
  process.on('SIGTERM', () => {
    for (const worker of Object.values(cluster.workers ?? {})) worker?.kill('SIGTERM');
    process.exit(0);
  });
} else {
  const supergraphSdl = readFileSync(process.env.SUPERGRAPH_PATH ?? 'supergraph.graphql', 'utf8');
  const headersFile = process.env.SUBGRAPH_HEADERS_FILE;
  let headers: Record<string, string> | undefined;
  // No usage reports to Apollo over the internet (there is none here), as in our router.
  process.env.APOLLO_TELEMETRY_DISABLED ??= 'true';
  const gateway = new ApolloGateway({
    supergraphSdl,
    ...(headersFile && {
      buildService: ({ url }) =>
        new RemoteGraphQLDataSource({
          url,
          willSendRequest({ request }) {
            headers ??= JSON.parse(readFileSync(headersFile, 'utf8')) as Record<string, string>;
            for (const [name, value] of Object.entries(headers)) request.http?.headers.set(name, value);
          },
        }),
    }),
  });
  const server = new ApolloServer({ gateway });
  const { url } = await startStandaloneServer(server, { listen: { port: Number(process.env.PORT ?? '4000'), host: '127.0.0.1' } });
  console.log(`bare gateway ready at ${url}`);
  process.on('SIGTERM', () => process.exit(0));
}
