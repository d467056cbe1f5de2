import { mkdir, writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { ROOT } from '../../support/processes.js';

/**
 * What every reliability scenario records, one JSON file per scenario in `FAULTS_RESULTS_DIR`
 * (default `.data/faults-results/`), named `<scenario>.json`. RELIABILITY.md is written from these
 * files, so the shape is a contract:
 *
 * ```json
 * { "scenario": "worker-crashes", "short": true,
 *   "figures": { "tasks": 40, "kills": 1, "lost": 0, "duplicates": 0, "http5xx": 0 },
 *   "notes": ["killed w2 mid-stream of task …"],
 *   "commands": ["npm run test:faults:short", "kill -9 <worker pid>"] }
 * ```
 *
 * `figures` are counts or durations (names end in `Ms` / `Seconds` for durations); `notes` are
 * sentences a reader can follow; `commands` are what the scenario ran against the machine (the
 * npm command first).
 */
export interface ScenarioResult {
  scenario: string;
  /** Run under FAULTS_SHORT=1 (the form in `npm test`). */
  short: boolean;
  figures: Record<string, number>;
  notes: string[];
  commands: string[];
}

/** True under `npm run test:faults:short` (FAULTS_SHORT=1). */
export const SHORT = process.env.FAULTS_SHORT === '1';

export const RESULTS_DIR = resolve(ROOT, process.env.FAULTS_RESULTS_DIR ?? '.data/faults-results');

/** Collects one scenario's figures while it runs, then prints them and writes `<scenario>.json`. */
export class ScenarioReport {
  readonly figures: Record<string, number> = {};
  readonly notes: string[] = [];
  readonly commands: string[];
  private readonly startedAt = Date.now();

  constructor(readonly scenario: string) {
    this.commands = [SHORT ? 'npm run test:faults:short' : 'npm run test:faults'];
  }

  /** Adds `by` to a figure (creating it at 0). */
  count(name: string, by = 1): void {
    this.figures[name] = (this.figures[name] ?? 0) + by;
  }

  set(name: string, value: number): void {
    this.figures[name] = value;
  }

  /** The largest value seen for a figure. */
  max(name: string, value: number): void {
    this.figures[name] = Math.max(this.figures[name] ?? value, value);
  }

  note(text: string): void {
    this.notes.push(text);
    console.log(`[${this.scenario}] ${text}`);
  }

  /** A command run against the machine (a restart, a kill), kept once. */
  command(text: string): void {
    if (!this.commands.includes(text)) this.commands.push(text);
  }

  result(): ScenarioResult {
    return {
      scenario: this.scenario,
      short: SHORT,
      figures: { ...this.figures, durationSeconds: Math.round((Date.now() - this.startedAt) / 1000) },
      notes: [...this.notes],
      commands: [...this.commands],
    };
  }

  /** Set once the figures were written. */
  written = false;

  /** For afterAll: a scenario that stopped early (a timeout, a thrown error) still records what it did. */
  async writeIfStopped(): Promise<void> {
    if (this.written) return;
    this.note('the scenario stopped before its checks (see the test output)');
    this.set('stoppedEarly', 1);
    await this.write();
  }

  /** Prints the figures as a table and writes the JSON file; returns its path. */
  async write(): Promise<string> {
    this.written = true;
    const result = this.result();
    console.log(`\n== ${result.scenario}${result.short ? ' (short)' : ''}`);
    console.table(result.figures);
    await mkdir(RESULTS_DIR, { recursive: true });
    const file = resolve(RESULTS_DIR, `${result.scenario}.json`);
    await writeFile(file, `${JSON.stringify(result, null, 2)}\n`);
    return file;
  }
}
