import { setTimeout as sleep } from 'node:timers/promises';
import { publishCollectorChange } from '@pga/redis-keys';
import type { CollectorChange } from '@pga/contracts';
import type { Deps } from '../deps';

/**
 * Tells every edge about a committed revocation / disable / delete / restore / enable (common
 * conventions). PostgreSQL is already the truth; this makes the edge act within a second. A few
 * retries cover a Redis blip; if Redis stays down the edge still reloads the deny state from Redis
 * after it reconnects — so this is logged as an error an operator must act on.
 */
export async function publishChange(
  deps: Deps,
  change: CollectorChange & { denyCollector?: boolean; allowCollector?: boolean },
): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await publishCollectorChange(deps.redis, deps.keys, change);
      return;
    } catch (err) {
      if (attempt >= 3) {
        deps.logger.error(
          { err, collectorId: change.collector_id, kind: change.kind },
          'collector change committed but not published to the edges',
        );
        return;
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
    deps.logger.error({ err, collectorId, version }, 'config_version committed but not written to Redis');
  }
}
