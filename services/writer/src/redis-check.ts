import type { Redis } from 'ioredis';
import type { Logger } from '@pga/logger';

export interface RedisSettings {
  maxmemoryPolicy: string | null;
  aofEnabled: boolean | null;
  /** Replicas connected to this Redis (INFO replication), null when unknown. */
  replicas: number | null;
}

/**
 * Reads the settings the queue's durability depends on from one plain `INFO` (all sections; it works
 * where CONFIG is renamed away, as on ElastiCache, and on Redis 6); null for what it does not say
 * or when INFO itself is not allowed.
 */
export async function readRedisSettings(redis: Redis): Promise<RedisSettings> {
  let info = '';
  try {
    info = await redis.info();
  } catch {
    // reported as unknown below
  }
  const aof = /aof_enabled:(\d)/.exec(info)?.[1];
  const replicas = /connected_slaves:(\d+)/.exec(info)?.[1];
  return {
    maxmemoryPolicy: /maxmemory_policy:(\S+)/.exec(info)?.[1] ?? null,
    aofEnabled: aof === undefined ? null : aof === '1',
    replicas: replicas === undefined ? null : Number(replicas),
  };
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
