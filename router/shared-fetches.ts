/**
 * Results shared by everyone who would make the very same fetch: the first caller of a key starts
 * it, later callers of the key get the same promise. An entry lives while someone holds it and
 * `idleMs` longer (so a subscriber that arrives just after the others let go still shares), then
 * it is swept: memory is bounded by what is in use, not by how many keys were ever seen.
 */
export interface SharedEntry<T> {
  readonly key: string;
  readonly promise: Promise<T>;
  /** The value once the promise has settled: callers use it synchronously from then on. */
  value: T | undefined;
  settled: boolean;
  /** Date.now() when it settled. */
  settledAt: number;
  refs: number;
  idleSince: number;
}

export class SharedFetches<T> {
  private readonly entries = new Map<string, SharedEntry<T>>();
  private readonly sweeper: NodeJS.Timeout;

  /** @param idleMs how long an entry nobody holds is kept. @default 1000 */
  constructor(private readonly idleMs = 1000) {
    this.sweeper = setInterval(() => this.sweep(), Math.max(100, idleMs)).unref();
  }

  /**
   * The entry of `key`, started with `load` if there is none (or if `isStale` says the one there
   * must not be reused, e.g. a failure old enough to retry). `load` must not reject: failures are
   * values. Every acquire must be paired with one {@link release}.
   */
  acquire(key: string, load: () => Promise<T>, isStale?: (entry: SharedEntry<T>) => boolean): SharedEntry<T> {
    let entry = this.entries.get(key);
    if (entry && isStale?.(entry)) {
      // Whoever still holds the stale entry keeps it until they move on; new callers get a fresh one.
      this.entries.delete(key);
      entry = undefined;
    }
    if (!entry) {
      const created: SharedEntry<T> = {
        key,
        promise: undefined as unknown as Promise<T>,
        value: undefined,
        settled: false,
        settledAt: 0,
        refs: 0,
        idleSince: 0,
      };
      (created as { promise: Promise<T> }).promise = load().then((value) => {
        created.value = value;
        created.settled = true;
        created.settledAt = Date.now();
        return value;
      });
      this.entries.set(key, created);
      entry = created;
    }
    entry.refs += 1;
    return entry;
  }

  release(entry: SharedEntry<T>): void {
    entry.refs -= 1;
    if (entry.refs <= 0) entry.idleSince = Date.now();
  }

  /** Entries in the map (for tests and metrics). */
  get size(): number {
    return this.entries.size;
  }

  sweep(now = Date.now()): void {
    for (const [key, entry] of this.entries) {
      if (entry.refs <= 0 && entry.settled && now - entry.idleSince >= this.idleMs) this.entries.delete(key);
    }
  }

  close(): void {
    clearInterval(this.sweeper);
    this.entries.clear();
  }
}
