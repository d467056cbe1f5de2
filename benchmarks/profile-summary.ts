/**
 * Where a process spent its CPU, from a V8 `.cpuprofile` (`node --cpu-prof`, e.g. the files
 * TASKS_BENCH_PROFILE=<dir> or BENCH_SUBSCRIPTIONS_CPU_PROF=<dir> leave): self time by package
 * (node_modules/<name>, our own code by top folder, node: internals, GC, idle) and the functions
 * with the most self time.
 *
 *   node --import tsx benchmarks/profile-summary.ts <file.cpuprofile> [top functions, default 25] [--skip seconds]
 *
 * `--skip` leaves out the first seconds of the profile (module loading and start-up), so that what
 * remains is the process under load.
 */
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { ROOT } from '../tests/support/processes.js';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** The package or folder a script belongs to: `node_modules/@scope/name`, `router`, `node:http`... */
function packageOf(url: string, functionName: string): string {
  if (!url) return functionName.startsWith('(') ? functionName : '(native)';
  if (url.startsWith('node:')) return 'node: internals';
  const path = url.replace(/^file:\/\//, '');
  const modules = path.lastIndexOf('/node_modules/');
  if (modules >= 0) {
    const parts = path.slice(modules + '/node_modules/'.length).split('/');
    return parts[0].startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0];
  }
  return `ours: ${relative(ROOT, path).split('/')[0]}`;
}

const args = process.argv.slice(2);
const skipAt = args.indexOf('--skip');
const skipUs = skipAt >= 0 ? Number(args.splice(skipAt, 2)[1]) * 1e6 : 0;
const [file, topArg] = args;
if (!file) {
  console.error('Usage: profile-summary.ts <file.cpuprofile> [top]');
  process.exit(2);
}
const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const byId = new Map(profile.nodes.map((node) => [node.id, node]));
const selfUs = new Map<number, number>();
let elapsedUs = 0;
for (let i = 0; i < profile.samples.length; i++) {
  elapsedUs += profile.timeDeltas[i] ?? 0;
  if (elapsedUs < skipUs) continue;
  selfUs.set(profile.samples[i], (selfUs.get(profile.samples[i]) ?? 0) + (profile.timeDeltas[i] ?? 0));
}
const total = [...selfUs.values()].reduce((sum, us) => sum + us, 0);
const idle = [...selfUs].filter(([id]) => byId.get(id)?.callFrame.functionName === '(idle)').reduce((sum, [, us]) => sum + us, 0);
const busy = total - idle;

const packages = new Map<string, number>();
const functions = new Map<string, number>();
for (const [id, us] of selfUs) {
  const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
  if (functionName === '(idle)') continue;
  const pkg = packageOf(url, functionName);
  packages.set(pkg, (packages.get(pkg) ?? 0) + us);
  const key = `${functionName || '(anonymous)'} ${pkg}${url ? `:${lineNumber + 1}` : ''}`;
  functions.set(key, (functions.get(key) ?? 0) + us);
}
const share = (us: number) => `${((us / busy) * 100).toFixed(1).padStart(5)}%`;
console.log(`${file}: ${(total / 1e6).toFixed(1)} s sampled, ${(busy / 1e6).toFixed(1)} s busy (${((busy / total) * 100).toFixed(0)}%)`);
console.log('\nself time by package (share of busy time):');
for (const [pkg, us] of [...packages].sort((a, b) => b[1] - a[1]).slice(0, 20)) console.log(`  ${share(us)}  ${pkg}`);
console.log(`\ntop functions by self time:`);
for (const [name, us] of [...functions].sort((a, b) => b[1] - a[1]).slice(0, Number(topArg ?? 25))) console.log(`  ${share(us)}  ${name}`);
