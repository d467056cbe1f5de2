/**
 * Writes RELIABILITY.md at the repository root (the short form: see REPORT_PATH) from the JSON each reliability scenario recorded in
 * FAULTS_RESULTS_DIR (default .data/faults-results/): what each scenario did, its figures, the
 * machine, the exact commands and the date. The suite runs it when it ends (globalSetup teardown in
 * tests/faults/vitest.config.ts); by hand: `node --import tsx tests/faults/write-report.ts`.
 */
import { execFile } from 'node:child_process';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { cpus, release, totalmem, type as osType } from 'node:os';
import { resolve } from 'node:path';
import { ROOT } from '../support/processes.js';
import { RESULTS_DIR, SHORT, type ScenarioResult } from './support/report.js';

/**
 * The full suite rewrites the committed RELIABILITY.md; the short form (in `npm test`) writes its
 * report beside its results, so that running the tests leaves the tree as it was.
 * `FAULTS_REPORT=<path>` chooses another place.
 */
export const REPORT_PATH = resolve(ROOT, process.env.FAULTS_REPORT ?? (SHORT ? resolve(RESULTS_DIR, 'RELIABILITY.md') : 'RELIABILITY.md'));

/** What each scenario does, in the order of the issue; scenarios not listed here follow, by name. */
const SCENARIOS: { name: string; title: string; what: string }[] = [
  {
    name: 'worker-crashes',
    title: '1. Worker crashes',
    what: 'A steady stream of echo tasks, each followed by a graphql-ws subscriber; a worker streaming a task is killed with SIGKILL (20 times; once in the short form) and a replacement started each time. Afterwards every task is terminal, none succeeded twice, no session holds an answer twice, and every stream is coherent and ends with the final event.',
  },
  {
    name: 'broker-restart',
    title: '2. Broker restart',
    what: 'RabbitMQ is stopped and started (`rabbitmqctl stop_app` / `start_app`) under load: services and workers reconnect by themselves, every submitted task finishes, and `runTask` during the outage either succeeds later (outbox) or fails with a clear error.',
  },
  {
    name: 'redis-restart',
    title: '3. Redis restart',
    what: 'Redis is restarted under load: subscribers reconnect and resume with `afterSequence` without missing an event; rate limits and caches recover.',
  },
  {
    name: 'database-hiccup',
    title: '4. Database hiccup',
    what: "The services' PostgreSQL connections are terminated (`pg_terminate_backend`) mid-load: they reconnect, requests in flight fail cleanly or retry, and no task is half-written.",
  },
  {
    name: 'provider-faults',
    title: '5. Provider faults',
    what: 'The LLM endpoint answers 429 with Retry-After, 500, hangs mid-stream, closes the connection or sends malformed SSE: bounded retries, then FAILED with a reason.',
  },
  {
    name: 'graceful-shutdown',
    title: '6. Graceful shutdown',
    what: 'A router and a worker get SIGTERM under load: in-flight requests complete, subscriptions close with the protocol’s code and clients resume on the other router, in-flight tasks are finished or handed back.',
  },
  {
    name: 'cross-tenant-sweep',
    title: '7. Cross-tenant sweep',
    what: "Generated from the committed supergraph (its API schema and each subgraph's schema, read with @apollo/federation-internals): every root query, mutation and subscription field, and `_entities` for every entity type, is called with the owner's real object ids (arguments generated from their types; every mix of the owner's and the other user's ids when a call takes several). Callers: the owner, another user and anonymous through the router; at each subgraph directly, a valid router proof for the other user, an anonymous proof and none. No answer to anyone but the owner may contain the owner's ids (except those the caller passed) or secrets (names, titles, message contents, key prefixes and secrets, tokens, email); the owner's data is identical before and after; the owner's own calls of the same generated operations work.",
  },
  {
    name: 'hostile-input',
    title: '8. Hostile input corpus',
    what: 'Operation bombs (depth, aliases, directives, tokens, cost, fragment fan-out and cycles, introspection), bodies (batches, 3 MB, 10,000- and 100,000-deep and 100,000-element variables, NUL characters and unpaired surrogates, invalid UTF-8, bad JSON, wrong content types and encodings, CSRF), forged and misaddressed tokens, revoked and under-scoped API keys, a login brute force, and graphql-ws abuse (no connection_init, early subscribe, second init, duplicate ids, oversized, garbage and binary frames, bad credentials, wrong subprotocol, 1,000 subscriptions on one socket, connection floods), all through the router. Each case is refused with the code the test states; no answer shows a stack trace or an internal path; the router’s heap after full collections (read through its inspector) stays flat across a second pass and it still answers afterwards.',
  },
  {
    name: 'soak',
    title: '9. Soak',
    what: 'Mixed load at a steady rate for five minutes (`SOAK_SECONDS` overrides; not in the short form): queries, mutations, API-key calls, and tasks each followed by a graphql-ws subscriber. Zero 5xx, every task SUCCEEDED with the right output, and the RSS and open sockets of the router and the workers flat between the first minute after warm-up and the last.',
  },
];

/** Figures shown in the summary table, when a scenario has them. */
const HEADLINE = ['tasks', 'kills', 'restarts', 'probes', 'hostileInputs', 'lost', 'duplicatedAnswers', 'duplicateFinalEvents', 'duplicates', 'leaks', 'http5xx', 'failedTests', 'stoppedEarly'];

function run(command: string, args: string[], timeoutMs = 15_000): Promise<string | undefined> {
  return new Promise((done) => {
    execFile(command, args, { timeout: timeoutMs, cwd: ROOT }, (error, stdout) => done(error ? undefined : stdout.trim()));
  });
}

async function machine(): Promise<string[]> {
  const cores = cpus();
  const redis = (await run('redis-cli', ['INFO', 'server']))?.match(/redis_version:(\S+)/)?.[1];
  const postgres = await run('psql', [process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres', '-tAc', 'show server_version']);
  const rabbit = await run('rabbitmqctl', ['version']);
  const commit = await run('git', ['rev-parse', '--short', 'HEAD']);
  const dirty = await run('git', ['status', '--porcelain']);
  return [
    `- CPU: ${cores.length} × ${cores[0]?.model ?? 'unknown'}; memory ${Math.round(totalmem() / 2 ** 30)} GiB; ${osType()} ${release()}`,
    `- Node.js ${process.version}; PostgreSQL ${postgres ?? 'unknown'}; Redis ${redis ?? 'unknown'}; RabbitMQ ${rabbit ?? 'unknown'} (all on 127.0.0.1)`,
    `- Commit ${commit ?? 'unknown'}${dirty ? ' with uncommitted changes' : ''}`,
  ];
}

interface Recorded extends ScenarioResult {
  recordedAt: Date;
}

async function readResults(): Promise<Recorded[]> {
  let files: string[];
  try {
    files = (await readdir(RESULTS_DIR)).filter((file) => file.endsWith('.json'));
  } catch {
    return [];
  }
  const results: Recorded[] = [];
  for (const file of files) {
    const path = resolve(RESULTS_DIR, file);
    try {
      const result = JSON.parse(await readFile(path, 'utf8')) as ScenarioResult;
      results.push({ ...result, recordedAt: (await stat(path)).mtime });
    } catch {
      // A file being written or not ours: left out.
    }
  }
  const order = (name: string) => {
    const index = SCENARIOS.findIndex((s) => s.name === name);
    return index < 0 ? SCENARIOS.length : index;
  };
  return results.sort((a, b) => order(a.scenario) - order(b.scenario) || a.scenario.localeCompare(b.scenario));
}

const cell = (text: string) => text.replaceAll('|', '\\|').replaceAll('\n', ' ');
const when = (date: Date) => date.toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');

/** RELIABILITY.md as text. `since`: results recorded before it are marked as from an earlier run. */
export async function renderReport(since?: Date): Promise<string> {
  const results = await readResults();
  const lines: string[] = [];
  lines.push('# Reliability', '');
  lines.push(
    'What `npm run test:faults` (and its short form `npm run test:faults:short`, part of `npm test`) did to the platform and what it measured. Every scenario runs the services as separate processes on the real PostgreSQL, Redis and RabbitMQ of the machine, each with its own database and Redis prefix or RabbitMQ vhost. This file is written by `tests/faults/write-report.ts` from the figures the scenarios recorded; do not edit it by hand.',
    '',
  );
  lines.push(`Generated ${when(new Date())}.`, '');
  lines.push('## Machine', '', ...(await machine()), '');
  if (results.length === 0) {
    lines.push(`No results in ${RESULTS_DIR}: run \`npm run test:faults\` first.`, '');
    return `${lines.join('\n')}\n`;
  }

  lines.push('## Summary', '');
  lines.push('| Scenario | Form | Recorded | Duration | Figures |', '| --- | --- | --- | --- | --- |');
  for (const result of results) {
    const title = SCENARIOS.find((s) => s.name === result.scenario)?.title ?? result.scenario;
    const headline = HEADLINE.filter((name) => name in result.figures).map((name) => `${name} ${result.figures[name]}`);
    const stale = since && result.recordedAt < since ? ' (earlier run)' : '';
    lines.push(`| ${cell(title)} | ${result.short ? 'short' : 'full'} | ${when(result.recordedAt)}${stale} | ${result.figures.durationSeconds ?? '?'} s | ${cell(headline.join(', '))} |`);
  }
  lines.push('');

  lines.push('## Commands', '');
  const commands = [...new Set(results.flatMap((r) => r.commands))];
  lines.push('```sh', ...commands, '```', '');

  for (const result of results) {
    const known = SCENARIOS.find((s) => s.name === result.scenario);
    lines.push(`## ${known?.title ?? result.scenario}`, '');
    lines.push(`Recorded ${when(result.recordedAt)}, ${result.short ? 'short form (`FAULTS_SHORT=1`)' : 'full form'}.`, '');
    if (known) lines.push(known.what, '');
    lines.push('| Figure | Value |', '| --- | --- |');
    for (const [name, value] of Object.entries(result.figures)) lines.push(`| ${cell(name)} | ${value} |`);
    lines.push('');
    if (result.notes.length > 0) lines.push(...result.notes.map((note) => `- ${note}`), '');
    lines.push('Commands:', '', '```sh', ...result.commands, '```', '');
  }
  return `${lines.join('\n').trimEnd()}\n`;
}

export async function writeReport(since?: Date): Promise<string> {
  await writeFile(REPORT_PATH, await renderReport(since));
  return REPORT_PATH;
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(new URL(import.meta.url).pathname)) {
  writeReport().then(
    (path) => console.log(`Wrote ${path}`),
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
}
