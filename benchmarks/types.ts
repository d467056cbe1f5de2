/** What every benchmark section gets and returns; `benchmarks/run.ts` runs them in turn. */
export interface BenchOptions {
  /** Smaller sizes and shorter windows, same code paths (`npm run bench -- --quick`). */
  quick: boolean;
  /** Prints a progress line. */
  log: (line: string) => void;
  /** CPU cores for the load generator and for the system under test (`taskset -c`), when pinning is possible. */
  cpus: { load: string; sut: string } | null;
}

export interface SectionResult {
  /** The figures, under the keys BENCHMARKS.md documents; null where a figure could not be measured. */
  figures: Record<string, number | null>;
  /** Why a figure is null (or anything a reader must know about it), by key. */
  notes: Record<string, string>;
  /** Rows for the printed table: [label, value, unit or comment]. */
  table: [string, string, string][];
}

export type Section = (options: BenchOptions) => Promise<SectionResult>;
