import { isDeepStrictEqual } from 'node:util';
import type { ContenderId, RunningContender } from './contenders.js';
import { mergeWindows, type LoadGenerator, type Window } from './load.js';

export interface SuiteSettings {
  connections: number;
  /**
   * Answers through the first contender before any contender is warmed up, so that the shared
   * subgraphs (their JIT, connection pools, database caches) are as warm for the first contender
   * as for the last...
   */
  primeRequests: number;
  /** ...or as many as come in this long. */
  primeMaxSeconds: number;
  /** Answers before the first measured window of each contender, not counted... */
  warmupRequests: number;
  /** ...or as many as come in this long. */
  warmupMaxSeconds: number;
  /** One measured window. */
  seconds: number;
  /** Answers per contender, one at a time, to count what one answer costs in subgraph traffic. */
  trafficSamples: number;
  /**
   * Windows per contender, taken in turns (a, b, c, d, then b, c, d, a, ...), so that a
   * disturbance of the machine during the run is shared instead of landing on one contender.
   */
  rounds: number;
}

/** Requests and bytes the subgraphs have seen so far (when they count them). */
export interface SubgraphTraffic {
  requests: number;
  bytesIn: number;
  bytesOut: number;
}

export interface ContenderOutcome {
  id: ContenderId;
  label: string;
  window: Window | null;
  /** Subgraph traffic of one answer alone (no other request in flight to share with), when `traffic` was given. */
  traffic?: SubgraphTraffic;
  /** Why there is no window, or what is wrong with the answers. */
  note?: string;
}

export interface SuiteOutcome {
  contenders: ContenderOutcome[];
  /** Size of one answer, in bytes (the first contender's). */
  answerBytes: number | null;
}

async function answerOf(contender: RunningContender, body: string): Promise<{ bytes: number; json: unknown }> {
  const response = await fetch(contender.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...contender.clientHeaders },
    body,
    signal: AbortSignal.timeout(30_000),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`HTTP ${response.status}: ${text.slice(0, 300)}`);
  return { bytes: Buffer.byteLength(text.trimEnd()), json: JSON.parse(text) as unknown };
}

/**
 * Checks that every contender gives the same answer to `body`, then loads each in turn. A
 * contender whose answer differs is still measured, with a note.
 */
export async function runSuite(
  contenders: readonly RunningContender[],
  body: string,
  settings: SuiteSettings,
  generator: LoadGenerator,
  log: (line: string) => void,
  traffic?: () => Promise<SubgraphTraffic>,
): Promise<SuiteOutcome> {
  const notes = new Map<ContenderId, string>();
  let reference: unknown;
  let answerBytes: number | null = null;
  for (const contender of contenders) {
    try {
      const answer = await answerOf(contender, body);
      const { errors } = answer.json as { errors?: unknown[] };
      if (errors) notes.set(contender.id, `answers with errors: ${JSON.stringify(errors).slice(0, 300)}`);
      else if (reference === undefined) {
        reference = answer.json;
        answerBytes = answer.bytes;
      } else if (!isDeepStrictEqual(answer.json, reference)) {
        notes.set(contender.id, `its answer differs from ${contenders[0].id}'s`);
      }
    } catch (error) {
      notes.set(contender.id, `no valid answer: ${(error as Error).message}`);
    }
  }

  // What one answer costs in subgraph fetches and bytes, each contender alone (before any load).
  const alone = new Map<ContenderId, SubgraphTraffic>();
  if (traffic) {
    const samples = settings.trafficSamples;
    for (const contender of contenders) {
      if (notes.has(contender.id)) continue;
      const before = await traffic();
      for (let i = 0; i < samples; i++) await answerOf(contender, body);
      const after = await traffic();
      alone.set(contender.id, {
        requests: (after.requests - before.requests) / samples,
        bytesIn: (after.bytesIn - before.bytesIn) / samples,
        bytesOut: (after.bytesOut - before.bytesOut) / samples,
      });
    }
  }

  if (settings.primeRequests > 0 && contenders.length > 0 && !notes.has(contenders[0].id)) {
    log(`  warming the subgraphs with ${settings.primeRequests} requests through ${contenders[0].id}`);
    await generator.run(
      {
        url: contenders[0].url,
        body,
        headers: contenders[0].clientHeaders,
        connections: settings.connections,
        warmupRequests: settings.primeRequests,
        warmupMaxSeconds: settings.primeMaxSeconds,
        seconds: 1,
        keepLatencies: false,
      },
      contenders[0].process.child.pid!,
    );
  }

  const windows = new Map<ContenderId, Window[]>();
  const failures = new Map<ContenderId, string>();
  for (let round = 0; round < settings.rounds; round++) {
    for (let i = 0; i < contenders.length; i++) {
      const contender = contenders[(i + round) % contenders.length];
      if (failures.has(contender.id)) continue;
      const first = !windows.has(contender.id);
      log(`  ${contender.id}: ${first ? `warm-up ${settings.warmupRequests} requests, ` : ''}window ${round + 1}/${settings.rounds} of ${settings.seconds} s`);
      try {
        const window = await generator.run(
          {
            url: contender.url,
            body,
            headers: contender.clientHeaders,
            connections: settings.connections,
            warmupRequests: first ? settings.warmupRequests : 0,
            warmupMaxSeconds: settings.warmupMaxSeconds,
            seconds: settings.seconds,
            keepLatencies: settings.rounds > 1,
          },
          contender.process.child.pid!,
        );
        windows.set(contender.id, [...(windows.get(contender.id) ?? []), window]);
      } catch (error) {
        failures.set(contender.id, `load failed: ${(error as Error).message.slice(0, 500)}`);
      }
    }
  }

  return {
    answerBytes,
    contenders: contenders.map((contender) => {
      const measured = windows.get(contender.id);
      const note = [notes.get(contender.id), failures.get(contender.id)].filter(Boolean).join('; ') || undefined;
      return { id: contender.id, label: contender.label, window: measured ? mergeWindows(measured) : null, traffic: alone.get(contender.id), note };
    }),
  };
}
