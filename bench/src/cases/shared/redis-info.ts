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
    return (await aofState(redis)).rewrites;
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

/** `INFO persistence` as numbers: AOF rewrites done so far, and whether one runs or waits to run. */
export async function aofState(redis: Redis): Promise<{ rewrites: number; busy: boolean }> {
  const info = await redis.info('persistence');
  const field = (name: string) => Number(new RegExp(`^${name}:(\\d+)`, 'm').exec(info)?.[1] ?? 0);
  return {
    rewrites: field('aof_rewrites'),
    busy: field('aof_rewrite_in_progress') === 1 || field('aof_rewrite_scheduled') === 1,
  };
}
