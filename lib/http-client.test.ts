import { createServer } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { listen, SERVER_KEEP_ALIVE_MS } from './http.js';
import { createSubgraphFetcher, FREE_SOCKET_IDLE_MS } from './http-client.js';

describe('subgraph fetcher and our servers: who closes an idle connection', () => {
  const cleanups: (() => void)[] = [];
  afterEach(() => cleanups.splice(0).forEach((cleanup) => cleanup()));

  it("keeps a pooled connection across a pause longer than Node's default 5 s keep-alive, and the pool lets go first", async () => {
    // The server closing an idle socket while the router sends on it was an ECONNRESET, answered
    // SERVICE_UNAVAILABLE: seen under load after a pause in the task benchmark.
    expect(FREE_SOCKET_IDLE_MS).toBeLessThan(SERVER_KEEP_ALIVE_MS);
    const peers: number[] = [];
    const server = createServer((req, res) => {
      peers.push(req.socket.remotePort!);
      req.resume().on('end', () => res.end('{"data":{}}'));
    });
    const port = await listen(server, 0, '127.0.0.1');
    const fetcher = createSubgraphFetcher();
    cleanups.push(() => server.close(), () => fetcher.close());
    const post = () => fetcher.fetcher(`http://127.0.0.1:${port}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect((await post()).status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 6000));
    expect((await post()).status).toBe(200);
    expect(peers).toHaveLength(2);
    expect(peers[1]).toBe(peers[0]); // the same connection, still open on both sides
  }, 15_000);
});
