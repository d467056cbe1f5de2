/**
 * Gathers the calls of one event-loop turn — and, under load, those that arrive while earlier
 * batches are in flight — into one call of `run`, so that a hundred tasks claimed or finished at
 * once cost one statement instead of a hundred. Alone, a call waits one turn (setImmediate).
 */
export interface BatcherOptions {
  /** Items per call of `run`. @default 500 */
  maxBatch?: number;
  /** Calls of `run` in flight at once; more items wait and join the next batch. @default 2 */
  maxInFlight?: number;
  /**
   * Whether a batch's failure may be one item's fault (data the database refuses): then its items
   * are run again one by one, so that the bad one fails alone instead of taking its neighbours
   * with it. Otherwise (the database is away) every item of the batch rejects with the error.
   * @default never
   */
  isolate?: (error: unknown) => boolean;
}

interface Pending<I, O> {
  item: I;
  resolve: (value: O) => void;
  reject: (error: unknown) => void;
}

export class Batcher<I, O> {
  private queue: Pending<I, O>[] = [];
  private scheduled = false;
  private inFlight = 0;
  private readonly maxBatch: number;
  private readonly maxInFlight: number;
  private readonly isolate: (error: unknown) => boolean;

  /** `run` answers one result per item, in the items' order. */
  constructor(
    private readonly run: (items: I[]) => Promise<O[]>,
    options: BatcherOptions = {},
  ) {
    this.maxBatch = options.maxBatch ?? 500;
    this.maxInFlight = options.maxInFlight ?? 2;
    this.isolate = options.isolate ?? (() => false);
  }

  add(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled || this.inFlight >= this.maxInFlight || this.queue.length === 0) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    while (this.inFlight < this.maxInFlight && this.queue.length > 0) {
      const batch = this.queue.splice(0, this.maxBatch);
      this.inFlight++;
      void this.run(batch.map((p) => p.item))
        .then(
          (results) => {
            for (let i = 0; i < batch.length; i++) batch[i].resolve(results[i]);
          },
          (error: unknown) => {
            if (batch.length > 1 && this.isolate(error)) {
              for (const p of batch) this.run([p.item]).then((results) => p.resolve(results[0]), p.reject);
            } else {
              for (const p of batch) p.reject(error);
            }
          },
        )
        .finally(() => {
          this.inFlight--;
          this.schedule();
        });
    }
  }
}
