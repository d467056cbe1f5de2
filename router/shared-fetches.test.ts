import { afterEach, describe, expect, it } from 'vitest';
import { SharedFetches } from './shared-fetches.js';

const opened: SharedFetches<unknown>[] = [];
afterEach(() => {
  while (opened.length) opened.pop()!.close();
});

function fetches<T>(idleMs = 1000): SharedFetches<T> {
  const shared = new SharedFetches<T>(idleMs);
  opened.push(shared as SharedFetches<unknown>);
  return shared;
}

describe('SharedFetches', () => {
  it('runs one load per key for everyone holding it, and exposes the value once settled', async () => {
    const shared = fetches<number>();
    let loads = 0;
    const load = async () => ++loads;
    const a = shared.acquire('k', load);
    const b = shared.acquire('k', load);
    expect(a).toBe(b);
    expect(a.settled).toBe(false);
    expect(await a.promise).toBe(1);
    expect(a).toMatchObject({ settled: true, value: 1, refs: 2 });
    expect(shared.acquire('other', load)).not.toBe(a);
    expect(loads).toBe(2);
  });

  it('keeps an entry nobody holds for idleMs, then sweeps it', async () => {
    const shared = fetches<string>(50);
    const entry = shared.acquire('k', async () => 'v');
    await entry.promise;
    shared.release(entry);
    expect(shared.acquire('k', async () => 'fresh')).toBe(entry);
    shared.release(entry);
    shared.sweep(Date.now() + 10);
    expect(shared.size).toBe(1);
    shared.sweep(Date.now() + 100);
    expect(shared.size).toBe(0);
    expect(await shared.acquire('k', async () => 'fresh').promise).toBe('fresh');
  });

  it('never sweeps an entry someone holds or one still loading', () => {
    const shared = fetches<string>(0);
    shared.acquire('held', async () => 'v');
    const pending = shared.acquire('pending', () => new Promise<string>(() => undefined));
    shared.release(pending);
    shared.sweep(Date.now() + 1000);
    expect(shared.size).toBe(2);
  });

  it('replaces an entry the caller calls stale, leaving it to those who hold it', async () => {
    const shared = fetches<{ ok: boolean }>();
    const failed = shared.acquire('k', async () => ({ ok: false }));
    await failed.promise;
    const retried = shared.acquire('k', async () => ({ ok: true }), (entry) => entry.settled && !entry.value!.ok);
    expect(retried).not.toBe(failed);
    expect(await retried.promise).toEqual({ ok: true });
    expect(shared.acquire('k', async () => ({ ok: false }), (entry) => entry.settled && !entry.value!.ok)).toBe(retried);
    expect(failed.refs).toBe(1);
  });
});
