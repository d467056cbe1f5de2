/**
 * `npm run bench [-- --quick] [--out FILE] [--only gateway,subscriptions,tasks,startup]`: starts
 * what each section needs, runs the contenders in turn on pinned cores, prints a table, and writes
 * the figures as JSON with --out. Numbers only: nothing here asserts a timing.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { stopSharedPlatform } from './support/platform.js';
import type { BenchOptions, Section, SectionResult } from './types.js';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const outIndex = args.indexOf('--out');
const out = outIndex >= 0 ? args[outIndex + 1] : undefined;
const onlyIndex = args.indexOf('--only');
const only = onlyIndex >= 0 ? new Set(args[onlyIndex + 1].split(',')) : null;

/** The figures every run must report, per section: a number, or null with the section's notes saying why. */
const REQUIRED_FIGURES: Record<string, readonly string[]> = {
  gateway: ['router_rps', 'router_auth_rps', 'apollo_gateway_rps', 'hive_gateway_rps', 'router_p99_ms', 'apollo_gateway_p99_ms', 'hive_gateway_p99_ms', 'router_rss_mb'],
  subscriptions: ['subscribers', 'events_per_s', 'p50_ms', 'p99_ms', 'router_rss_mb', 'bare_p99_ms', 'max_events_per_s', 'bare_max_events_per_s'],
  tasks: ['workers', 'tasks_per_s', 'p99_ms', 'bare_tasks_per_s'],
  startup: ['npm_start_to_first_answer_ms'],
};

const SECTIONS: Record<string, () => Promise<Section>> = {
  gateway: async () => (await import('./gateway/index.js')).run,
  subscriptions: async () => (await import('./subscriptions/index.js')).run,
  tasks: async () => (await import('./tasks/index.js')).run,
  startup: async () => (await import('./startup/index.js')).run,
};

function pinning(): BenchOptions['cpus'] {
  try {
    execFileSync('taskset', ['-c', '0', 'true'], { stdio: 'ignore' });
  } catch {
    return null;
  }
  const count = cpus().length;
  if (count < 2) return null;
  // The load generator on the last core, everything under test on the others.
  return { load: String(count - 1), sut: count === 2 ? '0' : `0-${count - 2}` };
}

const options: BenchOptions = {
  quick,
  log: (line) => console.error(`[bench] ${line}`),
  cpus: pinning(),
};

const machine = {
  cpus: cpus().length,
  cpuModel: cpus()[0]?.model ?? 'unknown',
  memoryGb: Math.round(totalmem() / 2 ** 30),
  node: process.version,
  quick,
  pinning: options.cpus,
  at: new Date().toISOString(),
};
console.error(`[bench] ${machine.cpus} × ${machine.cpuModel}, ${machine.memoryGb} GiB, Node ${machine.node}${quick ? ', quick' : ''}`);

const results: Record<string, unknown> = { machine };
const rows: [string, string, string][] = [];
let failed = false;
for (const [name, load] of Object.entries(SECTIONS)) {
  if (only && !only.has(name)) continue;
  const started = Date.now();
  options.log(`${name}: starting`);
  let result: SectionResult;
  try {
    result = await (await load())(options);
  } catch (error) {
    failed = true;
    console.error(`[bench] ${name} failed:`, error);
    result = { figures: {}, notes: { error: String((error as Error)?.stack ?? error) }, table: [[name, 'failed', String((error as Error)?.message ?? error)]] };
  }
  results[name] = { ...result.figures, notes: result.notes };
  const explained = Object.keys(result.notes).length > 0;
  const missing = (REQUIRED_FIGURES[name] ?? []).filter((key) => !(typeof result.figures[key] === 'number' || (result.figures[key] === null && explained)));
  if (missing.length > 0) {
    failed = true;
    console.error(`[bench] ${name}: no figure and no note for ${missing.join(', ')}`);
  }
  rows.push([`— ${name} (${Math.round((Date.now() - started) / 1000)} s)`, '', ''], ...result.table);
}

await stopSharedPlatform().catch((error: unknown) => console.error('[bench] stopping the platform failed:', error));

const width = [Math.max(...rows.map((r) => r[0].length)), Math.max(...rows.map((r) => r[1].length))];
console.log(rows.map(([a, b, c]) => `${a.padEnd(width[0])}  ${b.padStart(width[1])}  ${c}`).join('\n'));
if (out) {
  writeFileSync(out, `${JSON.stringify(results, null, 2)}\n`);
  console.error(`[bench] wrote ${out}`);
}
process.exit(failed ? 1 : 0);
