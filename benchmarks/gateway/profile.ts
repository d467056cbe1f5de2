/**
 * One contender on the public workload, profiled: `node --import tsx benchmarks/gateway/profile.ts
 * <router|router_auth|apollo_gateway|hive_gateway> [seconds] [--no-prof] [--node-flag=--flag ...]`. Warms it up, loads it
 * for `seconds` (default 15) from the last core, prints RPS, latency and CPU time per answer, and
 * (unless --no-prof) the functions and packages that cost the most CPU in the contender
 * (`node --cpu-prof`), keeping the .cpuprofile under the printed directory.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { CONTENDER_IDS, type ContenderId } from './contenders.js';
import { preparePublic } from './index.js';
import { LoadGenerator } from './load.js';
import { stopAll } from '../support/processes.js';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

/** Self time by function and by package, in percent of all samples. */
function summarize(path: string, windowSeconds: number, top = 30): string {
  const profile = JSON.parse(readFileSync(path, 'utf8')) as { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[]; endTime: number; startTime: number };
  // Only the samples of the measured window (it ends when the process is stopped): no start-up, no warm-up.
  const from = profile.endTime - (windowSeconds + 1) * 1e6;
  const hitsOf = new Map<number, number>();
  let at = profile.startTime;
  let total = 0;
  profile.samples.forEach((nodeId, i) => {
    at += profile.timeDeltas[i];
    if (at < from) return;
    hitsOf.set(nodeId, (hitsOf.get(nodeId) ?? 0) + 1);
    total++;
  });
  const byFunction = new Map<string, number>();
  const byPackage = new Map<string, number>();
  for (const node of profile.nodes) {
    const hits = hitsOf.get(node.id) ?? 0;
    if (hits === 0) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    const file = url.replace(/^file:\/\//, '').replace(/^.*node_modules\//, 'nm:');
    const key = `${functionName || '(anonymous)'} ${file ? `${file.split('/').slice(-2).join('/')}:${lineNumber + 1}` : ''}`;
    byFunction.set(key, (byFunction.get(key) ?? 0) + hits);
    const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)?.[1] ?? (url.startsWith('node:') ? 'node internals' : url ? url.replace(/^file:\/\/.*\/work\/main\//, '').split('/')[0] : functionName);
    byPackage.set(pkg, (byPackage.get(pkg) ?? 0) + hits);
  }
  const table = (map: Map<string, number>) =>
    [...map]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([key, hits]) => `${((hits / total) * 100).toFixed(1).padStart(5)}%  ${key}`)
      .join('\n');
  return `by package:\n${table(byPackage)}\n\nby function (self):\n${table(byFunction)}`;
}

const id = process.argv[2] as ContenderId;
if (!CONTENDER_IDS.includes(id)) {
  console.error(`Usage: profile.ts <${CONTENDER_IDS.join('|')}> [seconds] [--no-prof]`);
  process.exit(2);
}
const seconds = Number(process.argv[3] ?? '15') || 15;
const profiling = !process.argv.includes('--no-prof');
const count = cpus().length;
const pinning = count >= 2 ? { load: String(count - 1), sut: count === 2 ? '0' : `0-${count - 2}` } : null;
const dir = mkdtempSync(join(tmpdir(), 'bench-profile-'));
const profileDir = join(dir, 'profiles');
mkdirSync(profileDir);
const options = { quick: true, log: (line: string) => console.error(line), cpus: pinning };
try {
  const extraFlags = process.argv.filter((arg) => arg.startsWith('--node-flag=')).map((arg) => arg.slice('--node-flag='.length));
  const prepared = await preparePublic(options, dir, 1, [id], [...extraFlags, ...(profiling ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [])]);
  const [contender] = prepared.contenders;
  const generator = new LoadGenerator(pinning?.load, pinning?.sut);
  const window = await generator.run(
    {
      url: contender.url,
      body: prepared.body,
      headers: contender.clientHeaders,
      connections: 50,
      warmupRequests: 500,
      warmupMaxSeconds: 30,
      seconds,
      keepLatencies: false,
    },
    contender.process.child.pid!,
  );
  await generator.stop();
  console.log(
    `${id}: ${(window.requests / window.seconds).toFixed(1)} RPS, p50/p99 ${window.p50Ms.toFixed(0)}/${window.p99Ms.toFixed(0)} ms, ` +
      `${(window.cpuMs / window.requests).toFixed(2)} CPU ms per answer, errors ${window.errors + window.non2xx + window.graphqlErrors}`,
  );
  await contender.process.stop(15_000);
  if (profiling) {
    // One profile per thread (tsx's loader has one); the main thread's is the largest.
    const file = readdirSync(profileDir)
      .filter((name) => name.endsWith('.cpuprofile'))
      .sort((a, b) => statSync(join(profileDir, b)).size - statSync(join(profileDir, a)).size)[0];
    if (file) console.log(`${join(profileDir, file)}\n${summarize(join(profileDir, file), seconds)}`);
    else console.log('no profile was written');
  }
} finally {
  await stopAll();
}
