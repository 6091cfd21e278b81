import { setTimeout as sleep } from 'node:timers/promises';
import { publishCollectorChange } from '@pga/redis-keys';
import type { CollectorChange } from '@pga/contracts';
import type { Deps } from '../deps';

/**
 * Tells every edge about a committed revocation / disable / delete / restore / enable (common
 * conventions). PostgreSQL is already the truth; this makes the edge act within a second. A few
 * retries cover a Redis blip. A change still not published (Redis away, or up but refusing writes:
 * out of memory, MISCONF, READONLY) is logged as an error and handed to `deps.redisWriteLost()`:
 * the admin service then repairs the edges' state from PostgreSQL (`repairRedisState`) until Redis
 * takes it — a Redis that refuses writes never reconnects, so waiting for a reconnect left every
 * edge accepting a disabled collector until its 10-minute reload (and refusing an enabled one for
 * good). Resolves whether it was published. `quiet`: the repair's own publishes, which it retries.
 */
export async function publishChange(
  deps: Deps,
  change: CollectorChange & { denyCollector?: boolean; allowCollector?: boolean },
  { quiet = false }: { quiet?: boolean } = {},
): Promise<boolean> {
  for (let attempt = 1; ; attempt++) {
    try {
      await publishCollectorChange(deps.redis, deps.keys, change);
      return true;
    } catch (err) {
      if (attempt >= 3) {
        if (quiet) return false;
        deps.logger.error(
          { err, collectorId: change.collector_id, kind: change.kind },
          'collector change committed but not published to the edges; repairing from PostgreSQL until Redis takes it',
        );
        deps.redisWriteLost();
        return false;
      }
      await sleep(100 * attempt);
    }
  }
}

/** Keeps `HGET keys.configVersions id` equal to collectors.config_version (the edge answers heartbeats from it). */
export async function setConfigVersion(deps: Deps, collectorId: string, version: number): Promise<void> {
  try {
    await deps.redis.hset(deps.keys.configVersions, collectorId, String(version));
  } catch (err) {
    deps.logger.error(
      { err, collectorId, version },
      'config_version committed but not written to Redis; repairing from PostgreSQL until Redis takes it',
    );
    deps.redisWriteLost();
  }
}
