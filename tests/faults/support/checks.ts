import type pg from 'pg';
import { waitFor } from './cluster.js';
import type { SubmittedTask } from './load.js';
import type { ScenarioReport } from './report.js';
import { streamProblems } from './watch.js';

const TERMINAL = ['SUCCEEDED', 'FAILED', 'CANCELLED'];

export interface TaskRowState {
  id: string;
  status: string;
  output: string | null;
  error: string | null;
  attempts: number;
  session_id: string | null;
  finished_at: Date | null;
  worker_id: string | null;
  lease_expires_at: Date | null;
}

/** Waits until no task is QUEUED or RUNNING (or the time is up); returns the rows of every task. */
export async function settle(db: pg.Pool, timeoutMs = 120_000): Promise<TaskRowState[]> {
  await waitFor(
    'every task to finish',
    async () => (await db.query(`select count(*)::int as n from task.tasks where status in ('QUEUED', 'RUNNING')`)).rows[0].n === 0,
    timeoutMs,
    500,
  ).catch(() => undefined);
  // Outcome messages are published and archived by a relay right after the commit.
  await waitFor('the outbox to drain', async () => (await db.query(`select count(*)::int as n from task.outbox where published_at is null`)).rows[0].n === 0, 30_000, 250).catch(
    () => undefined,
  );
  return (await db.query<TaskRowState>(`select id, status, output, error, attempts, session_id, finished_at, worker_id, lease_expires_at from task.tasks`)).rows;
}

export interface Verdict {
  /** Problems in words; the scenario asserts there are none. */
  problems: string[];
}

/**
 * Checks every promise against the database and the subscribers, records the figures and returns
 * the problems: every task terminal and consistent (status vs finished_at, output, error, lease),
 * the outbox drained, at most one final event per task in the archive (none SUCCEEDED twice), at
 * most one answer per task in its session (and one for each success), every runTask answered with
 * an id has its task, and every subscriber's stream coherent and ended with the final event.
 */
export async function verify(db: pg.Pool, submitted: SubmittedTask[], report: ScenarioReport, options: { maxAttempts?: number; completeArchive?: boolean; allowGaps?: boolean } = {}): Promise<Verdict> {
  const rows = await settle(db);
  const problems: string[] = [];
  const byId = new Map(rows.map((row) => [row.id, row]));
  report.set('tasks', rows.length);
  for (const status of TERMINAL) report.set(status.toLowerCase(), rows.filter((r) => r.status === status).length);

  const stuck = rows.filter((r) => !TERMINAL.includes(r.status));
  report.set('stuck', stuck.length);
  for (const row of stuck) problems.push(`${row.id}: still ${row.status} (attempts ${row.attempts}, worker ${row.worker_id})`);

  const lost = submitted.filter((t) => !byId.has(t.id));
  report.set('lost', lost.length);
  for (const task of lost) problems.push(`${task.id}: answered by runTask but not in the database`);

  let halfWritten = 0;
  for (const row of rows) {
    if (!TERMINAL.includes(row.status)) continue;
    const wrong =
      !row.finished_at ||
      row.worker_id !== null ||
      row.lease_expires_at !== null ||
      (row.status === 'SUCCEEDED' && (row.output === null || row.error !== null || row.attempts < 1)) ||
      (row.status === 'FAILED' && !row.error);
    if (wrong) {
      halfWritten += 1;
      problems.push(`${row.id}: ${row.status} row is inconsistent (${JSON.stringify({ finished: row.finished_at, output: row.output?.slice(0, 20), error: row.error, worker: row.worker_id, lease: row.lease_expires_at, attempts: row.attempts })})`);
    }
  }
  report.set('halfWritten', halfWritten);
  const maxAttempts = options.maxAttempts ?? 5;
  const implausible = rows.filter((r) => r.attempts > maxAttempts + 1);
  for (const row of implausible) problems.push(`${row.id}: ${row.attempts} attempts`);
  report.set('maxAttemptsSeen', Math.max(0, ...rows.map((r) => r.attempts)));

  const unpublished = (await db.query(`select count(*)::int as n from task.outbox where published_at is null`)).rows[0].n as number;
  report.set('outboxUnpublished', unpublished);
  if (unpublished > 0) problems.push(`${unpublished} outbox rows never published`);

  // The archive (task.task_events): one final event per task, and it is the task's status.
  const finals = await db.query<{ task_id: string; n: number; types: string[] }>(
    `select task_id, count(*)::int as n, array_agg(type) as types from task.task_events where type in ('SUCCEEDED', 'FAILED', 'CANCELLED') group by task_id`,
  );
  const finalsById = new Map(finals.rows.map((r) => [r.task_id, r]));
  let duplicateFinals = 0;
  for (const row of finals.rows) {
    if (row.n > 1) {
      duplicateFinals += 1;
      problems.push(`${row.task_id}: ${row.n} final events archived (${row.types.join(', ')})`);
    }
  }
  let unarchived = 0;
  for (const row of rows) {
    if (!TERMINAL.includes(row.status)) continue;
    const archived = finalsById.get(row.id);
    if (!archived) unarchived += 1;
    else if (!archived.types.includes(row.status)) problems.push(`${row.id}: archived final event ${archived.types.join(', ')} but the task is ${row.status}`);
  }
  report.set('duplicateFinalEvents', duplicateFinals);
  report.set('unarchived', unarchived);
  if (unarchived > 0) problems.push(`${unarchived} finished tasks have no archived final event`);

  // Sessions: one answer per task, exactly for the successes (memory appends on task.succeeded).
  const withSession = rows.filter((r) => r.status === 'SUCCEEDED' && r.session_id);
  const answers = async () =>
    new Map(
      (await db.query<{ task_id: string; n: number }>(`select task_id, count(*)::int as n from memory.messages where role = 'ASSISTANT' and task_id is not null group by task_id`)).rows.map(
        (r) => [r.task_id, r.n],
      ),
    );
  let answered = await answers();
  if (withSession.some((r) => !answered.has(r.id))) {
    await waitFor('every success in its session', async () => withSession.every((r) => answered.has(r.id)) || ((answered = await answers()), withSession.every((r) => answered.has(r.id))), 30_000, 500).catch(
      () => undefined,
    );
  }
  const duplicatedAnswers = [...answered.values()].filter((n) => n > 1).length;
  const missingAnswers = withSession.filter((r) => !answered.has(r.id)).length;
  const answersOfFailures = rows.filter((r) => r.status !== 'SUCCEEDED' && answered.has(r.id)).length;
  report.set('duplicatedAnswers', duplicatedAnswers);
  report.set('missingAnswers', missingAnswers);
  if (duplicatedAnswers) problems.push(`${duplicatedAnswers} tasks have more than one answer in their session`);
  if (missingAnswers) problems.push(`${missingAnswers} successful tasks have no answer in their session`);
  if (answersOfFailures) problems.push(`${answersOfFailures} unsuccessful tasks have an answer in their session`);

  // Subscribers.
  const watched = submitted.filter((t) => t.watch);
  let incoherent = 0;
  let unfinishedStreams = 0;
  for (const task of watched) {
    const watch = task.watch!;
    const row = byId.get(task.id);
    if (!row) continue;
    if (!watch.final) unfinishedStreams += 1;
    const found = streamProblems(watch, row, { allowGaps: options.allowGaps });
    if (found.length > 0) {
      incoherent += 1;
      problems.push(...found);
    }
  }
  report.set('subscribers', watched.length);
  report.set('streamsWithoutFinalEvent', unfinishedStreams);
  report.set('incoherentStreams', incoherent);
  report.set('resubscriptions', watched.reduce((n, t) => n + t.watch!.resumes, 0));
  report.set('streamGaps', watched.reduce((n, t) => n + t.watch!.gaps, 0));
  // Which streams jumped, and where: what a reader needs to tell which event was lost.
  for (const task of watched.filter((t) => t.watch!.gaps > 0).slice(0, 5)) {
    const watch = task.watch!;
    report.note(`Stream of ${task.id} (from sequence ${watch.from}) jumped: ${watch.events.map((e) => `${e.sequence} ${e.type}${e.type === 'STARTED' ? ` #${e.attempt}` : ''}`).join(', ').slice(0, 400)}.`);
  }
  report.set('streamDuplicates', watched.reduce((n, t) => n + t.watch!.duplicates, 0));
  report.set('streamStalls', watched.reduce((n, t) => n + t.watch!.stalls, 0));
  report.set('retriedAttemptsSeen', watched.reduce((n, t) => n + t.watch!.events.filter((e) => e.type === 'STARTED' && e.attempt > 1).length, 0));
  // The archive (replay once the live log expires) holds what the subscribers saw.
  const archived = await db.query<{ task_id: string; events: { sequence: number; type: string; delta: string | null; attempt: number }[] }>(
    `select task_id, json_agg(json_build_object('sequence', sequence, 'type', type, 'delta', delta, 'attempt', attempt) order by sequence) as events from task.task_events group by task_id`,
  );
  const archiveById = new Map(archived.rows.map((r) => [r.task_id, r.events]));
  let archiveMismatches = 0;
  for (const task of watched) {
    const watch = task.watch!;
    if (watch.from !== 0 || !watch.final) continue;
    const events = archiveById.get(task.id) ?? [];
    const same = events.length === watch.events.length && events.every((e, i) => {
      const seen = watch.events[i];
      return e.sequence === seen.sequence && e.type === seen.type && e.delta === seen.delta && e.attempt === seen.attempt;
    });
    if (!same) {
      archiveMismatches += 1;
      if (options.completeArchive ?? true) problems.push(`${task.id}: archived events (${events.length}) differ from the stream (${watch.events.length})`);
    }
  }
  report.set('archiveMismatches', archiveMismatches);
  const stalls = watched.filter((t) => t.watch!.stalls > 0);
  for (const task of stalls) problems.push(`${task.id}: its subscription stalled ${task.watch!.stalls} time(s) (no event for the stall period)`);
  return { problems };
}
