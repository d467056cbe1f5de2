import { Redis } from 'ioredis';

/** Deletes every key under each prefix (best effort: they expire anyway); absent prefixes are skipped. */
export async function deleteRedisKeys(url: string, prefixes: readonly (string | undefined)[]): Promise<void> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    for (const prefix of prefixes) {
      if (!prefix) continue;
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
        cursor = next;
        if (keys.length > 0) await redis.unlink(...keys);
      } while (cursor !== '0');
    }
  } catch {
    // best effort
  } finally {
    redis.disconnect();
  }
}
