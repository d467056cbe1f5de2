/**
 * Startup: `npm start` on embedded defaults (no DATABASE_URL, REDIS_URL or AMQP_URL: an embedded
 * PostgreSQL, in-memory stores) to the first successful GraphQL answer on the router's port. The
 * first start initialises a fresh DATA_DIR in a temporary folder (cold: initdb, migrations, JWT
 * keys); then the platform is stopped and started again on the same folder (warm, what a developer
 * sees every day), once in quick mode and three times in a full run (the median is reported).
 * `npm start` runs in its own process group, pinned to the cores under test when the runner can,
 * and the whole group is stopped after each start.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { freePort, ROOT, sleep } from '../support/processes.js';
import type { Section, SectionResult } from '../types.js';

interface StartMeasure {
  /** Spawn → first 200 with data from POST /graphql on the router port, ms. */
  firstAnswerMs: number;
  /** What the platform logs as its own ready time ("Agent platform ready in N ms"), when seen. */
  reportedReadyMs: number | null;
}

function groupAlive(pgid: number): boolean {
  try {
    return execFileSync('ps', ['-o', 'pid=', '-g', String(pgid)]).toString().trim().length > 0;
  } catch {
    return false; // ps exits 1 when nothing matches
  }
}

function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // already gone
  }
}

/** SIGTERM to the whole group (npm, the platform, the embedded PostgreSQL), SIGKILL after 20 s. */
async function stopGroup(child: ChildProcess): Promise<void> {
  const pgid = child.pid!;
  signalGroup(pgid, 'SIGTERM');
  const deadline = Date.now() + 20_000;
  while (groupAlive(pgid) && Date.now() < deadline) await sleep(100);
  if (groupAlive(pgid)) {
    signalGroup(pgid, 'SIGKILL');
    while (groupAlive(pgid)) await sleep(100);
  }
}

async function answers(url: string): Promise<boolean> {
  try {
    const response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"query":"{ __typename }"}',
      signal: AbortSignal.timeout(2000),
    });
    if (!response.ok) return false;
    const body = (await response.json()) as { data?: { __typename?: string } };
    return body.data?.__typename === 'Query';
  } catch {
    return false;
  }
}

async function startOnce(dataDir: string, cpus: string | null, timeoutMs: number): Promise<StartMeasure> {
  const ports: Record<string, number> = { PORT: await freePort(), AGENT_PORT: await freePort(), TASK_PORT: await freePort(), MEMORY_PORT: await freePort(), AUTH_PORT: await freePort() };
  // Embedded defaults: only what moves the platform aside (ports, data folder); nothing else inherited.
  const env: Record<string, string> = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', DATA_DIR: dataDir, LOG_LEVEL: 'info' };
  for (const [name, port] of Object.entries(ports)) env[name] = String(port);
  const [command, args] = cpus ? ['taskset', ['-c', cpus, 'npm', 'start', '--silent']] : ['npm', ['start', '--silent']];
  const url = `http://127.0.0.1:${ports.PORT}/graphql`;
  const started = performance.now();
  const child = spawn(command as string, args as string[], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output = (output + chunk.toString()).slice(-50_000)));
  child.stderr!.on('data', (chunk: Buffer) => (output = (output + chunk.toString()).slice(-50_000)));
  try {
    for (;;) {
      if (await answers(url)) break;
      if (child.exitCode !== null) throw new Error(`npm start exited with ${child.exitCode}:\n${output.slice(-3000)}`);
      if (performance.now() - started > timeoutMs) throw new Error(`npm start gave no answer within ${timeoutMs} ms:\n${output.slice(-3000)}`);
      await sleep(10);
    }
    const firstAnswerMs = Math.round(performance.now() - started);
    const reported = /Agent platform ready in (\d+) ms/.exec(output);
    return { firstAnswerMs, reportedReadyMs: reported ? Number(reported[1]) : null };
  } finally {
    await stopGroup(child);
  }
}

export const run: Section = async (options): Promise<SectionResult> => {
  const dataDir = mkdtempSync(join(tmpdir(), 'agent-platform-bench-start-'));
  const cpus = options.cpus?.sut ?? null;
  try {
    const cold = await startOnce(dataDir, cpus, 120_000);
    options.log(`startup: cold first start ${cold.firstAnswerMs} ms`);
    const warm: StartMeasure[] = [];
    for (let i = 0; i < (options.quick ? 1 : 3); i++) {
      warm.push(await startOnce(dataDir, cpus, 60_000));
      options.log(`startup: warm start ${warm.at(-1)!.firstAnswerMs} ms`);
    }
    const sorted = [...warm].sort((a, b) => a.firstAnswerMs - b.firstAnswerMs);
    const median = sorted[Math.floor(sorted.length / 2)];
    return {
      figures: {
        npm_start_to_first_answer_ms: median.firstAnswerMs,
        cold_first_start_ms: cold.firstAnswerMs,
        warm_reported_ready_ms: median.reportedReadyMs,
      },
      notes: {
        npm_start_to_first_answer_ms:
          `Warm restart on an initialised DATA_DIR (embedded PostgreSQL, in-memory stores), spawn of \`npm start\` → first 200 with data for { __typename } on the router port; ` +
          `median of ${warm.length} (${warm.map((w) => w.firstAnswerMs).join(', ')} ms)${cpus ? `, pinned to cores ${cpus}` : ''}.`,
        cold_first_start_ms: 'First start on an empty DATA_DIR: initdb of the embedded PostgreSQL, migrations, JWT keys.',
        warm_reported_ready_ms: 'The platform\'s own "ready in N ms" log line (from its process start, after npm\'s own start-up).',
      },
      table: [
        ['npm start → first answer (warm)', `${median.firstAnswerMs}`, `ms (median of ${warm.length})`],
        ['npm start → first answer (cold, first start)', `${cold.firstAnswerMs}`, 'ms'],
      ],
    };
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
};
