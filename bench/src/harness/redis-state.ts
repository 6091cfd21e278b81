import { Redis } from 'ioredis';

/** @pga/redis-keys with the bench's REDIS_KEY_PREFIX ("pga"): the push queue's BullMQ keys. */
export const PUSH_QUEUE = 'pga:bull:pushes';

/**
 * Everything a push leaves in Redis (@pga/redis-keys, prefix "pga"): its idempotency marker
 * (24 h TTL), its batch's state key (24 h once stored), its collector's push quota counter (1 h) and the push queue's keys (jobs, events,
 * deduplication keys; BullMQ recreates its `meta` and `id` at the next add). Not the deny sets,
 * the deny version, config versions, heartbeats or the maintenance queue: services write those at
 * start or on admin actions and keep reading them.
 */
const PUSH_DERIVED = ['pga:idem:*', 'pga:idem-batch:*', 'pga:quota:push:*', `${PUSH_QUEUE}:*`];

/**
 * `INFO persistence` as numbers: whether the AOF is on, the AOF rewrites done since Redis started
 * (each one forks, stopping Redis's main thread, and re-encodes the data set in the child), and
 * whether one runs or waits to run.
 */
export async function aofState(redis: Redis): Promise<{ enabled: boolean; rewrites: number; busy: boolean }> {
  const info = await redis.info('persistence');
  const field = (name: string) => Number(new RegExp(`^${name}:(\\d+)`, 'm').exec(info)?.[1] ?? 0);
  return {
    enabled: field('aof_enabled') === 1,
    rewrites: field('aof_rewrites'),
    busy: field('aof_rewrite_in_progress') === 1 || field('aof_rewrite_scheduled') === 1,
  };
}

/** AOF rewrites Redis has done since it started, read on a connection of its own (undefined if unreachable). */
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

/** No AOF rewrite running or scheduled, and the memory of unlinked keys freed (≤ 120 s). */
export async function redisIdle(redis: Redis): Promise<void> {
  const until = Date.now() + 120_000;
  const lazyfreePending = async () => Number(/^lazyfree_pending_objects:(\d+)/m.exec(await redis.info('memory'))?.[1] ?? 0);
  while (((await aofState(redis)).busy || (await lazyfreePending()) > 0) && Date.now() < until)
    await new Promise((r) => setTimeout(r, 100));
}

/** Rewrites the AOF down to the data set as it is now and waits until Redis is idle again (nothing without AOF). */
export async function compactAof(redis: Redis): Promise<void> {
  await redisIdle(redis);
  if (!(await aofState(redis)).enabled) return;
  await redis.bgrewriteaof();
  await redisIdle(redis);
}

/** Unlinks every key matching `pattern` (SCAN, so Redis is never blocked for long); answers how many. */
export async function unlinkMatching(redis: Redis, pattern: string): Promise<number> {
  let cursor = '0';
  let count = 0;
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 10_000);
    if (keys.length) count += await redis.unlink(...keys);
    cursor = next;
  } while (cursor !== '0');
  return count;
}

/**
 * Removes what earlier runs' pushes left in Redis and compacts the AOF, so that every run starts
 * from the same Redis: without it, idempotency markers (24 h TTL) pile up run after run, scenario
 * after scenario, and every AOF rewrite of a later run re-encodes them. Not FLUSHDB: the running
 * services keep state there that they wrote at start (PUSH_DERIVED says which). Answers the
 * number of keys removed.
 */
export async function resetPushState(redisUrl: string): Promise<number> {
  const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 3 });
  try {
    await redis.connect();
    let removed = 0;
    for (const pattern of PUSH_DERIVED) removed += await unlinkMatching(redis, pattern);
    await compactAof(redis);
    return removed;
  } finally {
    redis.disconnect();
  }
}
