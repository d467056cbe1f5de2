import { writeReport } from './write-report.js';

/** Vitest globalSetup of the reliability suite: RELIABILITY.md is rewritten from the recorded figures when the run ends. */
let startedAt = new Date();

export function setup(): void {
  startedAt = new Date();
}

export async function teardown(): Promise<void> {
  try {
    console.log(`Wrote ${await writeReport(startedAt)}`);
  } catch (error) {
    // The report is a by-product: failing to write it must not hide the tests' own result.
    console.error('Writing RELIABILITY.md failed:', error);
  }
}
