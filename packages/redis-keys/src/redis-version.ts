import type { Redis } from 'ioredis';

/**
 * The oldest Redis the edge and the writer start against. BullMQ (5.81) refuses below 5.0.0 and warns
 * below 6.2.0 ("highly recommended"), taking older code paths under 6.0.6; our own commands need 5.0
 * (multi-field HSET and UNLINK: 4.0; scripts that write after TIME rely on effects replication, the
 * default from 5.0). 6.2.0 is what BullMQ recommends and the oldest ElastiCache offers today; the
 * tests run on 7.0.
 */
export const MIN_REDIS_VERSION = '6.2.0';

/** The server is older than the minimum (its message is the one line to log). */
export class RedisTooOldError extends Error {
  override name = 'RedisTooOldError';
}

/** `redis_version` of an INFO answer (Valkey reports a compatible redis_version too), or undefined. */
export function redisVersionFromInfo(info: string): string | undefined {
  return /^redis_version:([0-9][0-9.]*)/m.exec(info)?.[1];
}

/** Whether dotted version `a` is below `b`, numerically part by part ("6.10.0" is above "6.2.0"). */
export function versionBelow(a: string, b: string): boolean {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] ?? 0;
    const y = pb[i] ?? 0;
    if (x !== y) return x < y;
  }
  return false;
}

/**
 * Reads the server's version (INFO server) and throws one line saying what to do when it is below
 * MIN_REDIS_VERSION; returns the version (undefined when INFO does not say, then nothing is refused).
 */
export async function checkRedisVersion(redis: Redis, min: string = MIN_REDIS_VERSION): Promise<string | undefined> {
  const version = redisVersionFromInfo(await redis.info('server'));
  if (version !== undefined && versionBelow(version, min))
    throw new RedisTooOldError(
      `Redis ${version} is too old: pgAnalytics Central needs Redis ${min} or newer (upgrade the server named by REDIS_URL)`,
    );
  return version;
}
