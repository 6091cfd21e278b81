import { Redis } from 'ioredis';

/**
 * AOF rewrites Redis has done since it started (`INFO persistence`, Redis 7). Each one forks
 * (Redis's main thread stops for the fork) and re-encodes the data set in the child: read it before
 * and after a run to say how many fell into it.
 */
export async function aofRewrites(redisUrl: string): Promise<number | undefined> {
  const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    const match = /^aof_rewrites:(\d+)/m.exec(await redis.info('persistence'));
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  } finally {
    redis.disconnect();
  }
}

/** The note for a run: how many AOF rewrites it saw (nothing when either count is unknown). */
export function aofRewritesNote(before: number | undefined, after: number | undefined): string[] {
  return before === undefined || after === undefined ? [] : [`Redis AOF rewrites during the run: ${after - before}`];
}
