import { call } from './load.js';

export interface ProbeCall {
  router: string;
  startedAt: number;
  endedAt: number;
  status: number;
  codes: string[];
  networkError?: string;
}

/**
 * Keeps `concurrency` GraphQL queries in flight against the routers `targets()` names (each loop
 * sends the next one when the last is answered) and records every call, so a scenario can say which
 * requests were under way at a moment (a SIGTERM) and how each ended.
 */
export class HttpProbe {
  readonly calls: ProbeCall[] = [];
  private running = false;
  private loops: Promise<void>[] = [];

  constructor(
    private readonly targets: () => string[],
    private readonly token: string,
    private readonly query = '{ me { id } agents { totalCount } }',
  ) {}

  start(concurrency = 4): void {
    this.running = true;
    this.loops = Array.from({ length: concurrency }, async (_, lane) => {
      for (let n = lane; this.running; n += concurrency) {
        const urls = this.targets();
        if (urls.length === 0) break;
        const router = urls[n % urls.length];
        const startedAt = Date.now();
        const outcome = await call(router, this.token, this.query, {}, 20_000);
        this.calls.push({ router, startedAt, endedAt: Date.now(), status: outcome.status, codes: outcome.codes, networkError: outcome.networkError });
      }
    });
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }

  /** Calls to `router` that started before `at` and had not been answered by then. */
  inFlightAt(router: string, at: number): ProbeCall[] {
    return this.calls.filter((c) => c.router === router && c.startedAt < at && c.endedAt > at);
  }

  get http5xx(): number {
    return this.calls.filter((c) => c.status >= 500).length;
  }
}
