/**
 * A/B of two router checkouts on the public workload, for judging one optimisation on a machine
 * that other work shares: `node --import tsx benchmarks/gateway/ab.ts <dirA> <dirB> [rounds]
 * [seconds] [--auth]`. Both routers run at once on the same core and are loaded in alternating
 * windows, so that a disturbance lands on both; prints the median CPU ms per answer and RPS of each.
 * A directory is a checkout (or copy) with router/main.ts and node_modules.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import jwt from 'jsonwebtoken';
import { generateJwtKeyPair, JWT_ALGORITHM } from '../../lib/jwt-keys.js';
import { LoadGenerator, type Window } from './load.js';
import { freePort, nodeCommand, spawnProcess, stopAll, waitUntil } from '../support/processes.js';
import type { PublicSubgraphName } from './public/subgraphs.js';
import { composePublicSupergraph, HEAVY_QUERY } from './public/workload.js';

const [dirA, dirB] = process.argv.slice(2, 4);
if (!dirA || !dirB) {
  console.error('Usage: ab.ts <dirA> <dirB> [rounds] [seconds] [--auth]');
  process.exit(2);
}
const rounds = Number(process.argv[4] ?? '5') || 5;
const seconds = Number(process.argv[5] ?? '4') || 4;
const auth = process.argv.includes('--auth');
const count = cpus().length;
const sut = count === 2 ? '0' : `0-${count - 2}`;
const load = String(count - 1);

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

try {
  const subgraphs = spawnProcess('public subgraphs', nodeCommand('benchmarks/gateway/public/serve.ts'), { cpus: load });
  const ports = (JSON.parse(await subgraphs.line((line) => line.startsWith('{"ready"'))) as { ready: Record<PublicSubgraphName, number> }).ready;
  subgraphs.pin();
  const dir = mkdtempSync(join(tmpdir(), 'bench-ab-'));
  const supergraphPath = join(dir, 'supergraph.graphql');
  writeFileSync(supergraphPath, composePublicSupergraph(ports));
  const keys = generateJwtKeyPair();
  const token = jwt.sign({}, keys.privateKey, { algorithm: JWT_ALGORITHM, subject: 'bench', issuer: 'agent-platform', audience: 'agent-platform-api', expiresIn: 3600 });
  const headers: Record<string, string> = auth ? { authorization: `Bearer ${token}` } : {};
  const variants = await Promise.all(
    [dirA, dirB].map(async (root) => {
      const port = await freePort();
      const started = spawnProcess(root, [process.execPath, '--import', 'tsx', resolve(root, 'router/main.ts')], {
        cpus: sut,
        env: {
          NODE_ENV: 'production',
          INTERNAL_SECRET: 'bench-internal-secret-0123456789abcdef0123456789',
          JWT_PUBLIC_KEY: keys.publicKey,
          SUPERGRAPH_PATH: supergraphPath,
          PORT: String(port),
          HOST: '127.0.0.1',
          ...(auth
            ? { RATE_LIMIT_PER_MINUTE: '100000000', MAX_COST: '100000000' }
            : { ALLOW_ANONYMOUS: 'true', RATE_LIMIT_ENABLED: 'false', OPERATION_LIMITS_ENABLED: 'false' }),
        },
      });
      const url = `http://127.0.0.1:${port}/graphql`;
      await waitUntil(root, async () => (await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: '{"query":"{ __typename }"}' })).ok, started);
      return { root, url, pid: started.child.pid!, windows: [] as Window[] };
    }),
  );
  const generator = new LoadGenerator(load, sut);
  const body = JSON.stringify({ query: HEAVY_QUERY });
  for (let round = 0; round < rounds; round++) {
    for (const variant of round % 2 === 0 ? variants : [...variants].reverse()) {
      const window = await generator.run(
        { url: variant.url, body, headers, connections: 50, warmupRequests: round === 0 ? 500 : 0, warmupMaxSeconds: 30, seconds, keepLatencies: false },
        variant.pid,
      );
      variant.windows.push(window);
      console.error(`${variant.root}: ${(window.requests / window.seconds).toFixed(1)} RPS, ${(window.cpuMs / window.requests).toFixed(2)} CPU ms/answer, other work ${Math.round(window.foreignCpuMs / window.seconds / 10)}%`);
    }
  }
  await generator.stop();
  // Windows next to each other in time share most of the machine's other work: their ratio is
  // steadier, and pairs where other work took much of the core say little either way.
  const busy = (w: Window) => w.foreignCpuMs / (w.seconds * 1000);
  const pairs = variants[0].windows.map((a, i) => [a, variants[1].windows[i]] as const);
  const quiet = pairs.filter(([a, b]) => busy(a) < 0.2 && busy(b) < 0.2);
  const ratio = ([a, b]: readonly [Window, Window]) => b.cpuMs / b.requests / (a.cpuMs / a.requests);
  console.log(`B/A CPU per answer: median ratio ${median(pairs.map(ratio)).toFixed(3)} over ${pairs.length} pairs (${pairs.map((p) => ratio(p).toFixed(2)).join(' ')})`);
  if (quiet.length > 0) console.log(`B/A CPU per answer, pairs with under 20% other work: median ratio ${median(quiet.map(ratio)).toFixed(3)} over ${quiet.length} pairs`);
  for (const variant of variants) {
    const cpu = median(variant.windows.map((w) => w.cpuMs / w.requests));
    const rps = median(variant.windows.map((w) => w.requests / w.seconds));
    const failed = variant.windows.reduce((n, w) => n + w.errors + w.non2xx + w.graphqlErrors, 0);
    console.log(`${variant.root}: median ${cpu.toFixed(2)} CPU ms/answer, ${rps.toFixed(1)} RPS, errors ${failed}`);
  }
} finally {
  await stopAll();
}
