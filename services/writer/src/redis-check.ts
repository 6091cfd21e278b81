import type { Redis } from 'ioredis';
import type { Logger } from '@pga/logger';

export interface RedisSettings {
  maxmemoryPolicy: string | null;
  aofEnabled: boolean | null;
  /** Replicas connected to this Redis (INFO replication), null when unknown. */
  replicas: number | null;
}

/** Reads the settings the queue's durability depends on (null when CONFIG/INFO is not allowed). */
export async function readRedisSettings(redis: Redis): Promise<RedisSettings> {
  let maxmemoryPolicy: string | null = null;
  let aofEnabled: boolean | null = null;
  let replicas: number | null = null;
  try {
    const reply = (await redis.config('GET', 'maxmemory-policy')) as string[];
    maxmemoryPolicy = reply[1] ?? null;
  } catch {
    // Managed Redis (e.g. ElastiCache) may rename CONFIG; fall through to INFO.
  }
  try {
    const info = await redis.info('persistence');
    const aof = /aof_enabled:(\d)/.exec(info);
    if (aof) aofEnabled = aof[1] === '1';
    if (!maxmemoryPolicy) maxmemoryPolicy = /maxmemory_policy:(\S+)/.exec(await redis.info('memory'))?.[1] ?? null;
    const connected = /connected_slaves:(\d+)/.exec(await redis.info('replication'));
    if (connected) replicas = Number(connected[1]);
  } catch {
    // ignore: reported as unknown below
  }
  return { maxmemoryPolicy, aofEnabled, replicas };
}

/**
 * Start-up check (issue 5 §6): with any eviction policy Redis may silently drop queued pushes that
 * the edge already acknowledged, so that is refused (unless `require` is false); AOF off only warns
 * (a Redis restart would lose what was queued but not yet written).
 */
export async function checkRedisSettings(
  redis: Redis,
  logger: Logger,
  { require }: { require: boolean },
): Promise<RedisSettings> {
  const settings = await readRedisSettings(redis);
  if (settings.maxmemoryPolicy === null) {
    logger.warn('could not read Redis maxmemory-policy; make sure it is noeviction');
  } else if (settings.maxmemoryPolicy !== 'noeviction') {
    const message = `Redis maxmemory-policy is ${settings.maxmemoryPolicy}; it must be noeviction or acknowledged pushes can be evicted`;
    if (require) throw new Error(message);
    logger.warn(message);
  }
  if (settings.aofEnabled === false) {
    // With replicas (ElastiCache with replication, Multi-AZ), a failover keeps what reached one.
    logger.warn(
      settings.replicas
        ? `Redis appendonly is off, ${settings.replicas} replica(s) connected: a failover keeps the pushes that reached a replica, but a restart of this Redis without one loses pushes that were acknowledged but not yet written`
        : 'Redis appendonly is off and no replica is connected: a Redis restart loses pushes that were acknowledged but not yet written',
    );
  }
  return settings;
}
