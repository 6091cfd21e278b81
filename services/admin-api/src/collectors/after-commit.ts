import { setTimeout as sleep } from 'node:timers/promises';
import { publishCollectorChange, recordKnownCollectors, type PublishedChange } from '@pga/redis-keys';
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
  change: PublishedChange,
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

/**
 * SQL of a collectors row's deny time as `keys.deniedAt` records it (`denied_at_us`): epoch µs of
 * its last modification by an admin (a disable, a delete), on PostgreSQL's clock — the clock of the
 * audit log's created_at that the repair compares it with. An enable or restore sets
 * last_modified_at too, so no allow PostgreSQL holds is later than it. Without one (a row changed
 * by hand), the statement's time.
 */
export const DENIED_AT_US =
  '(extract(epoch FROM coalesce(GREATEST(deleted_at, last_modified_at), now())) * 1000000)::bigint::text AS denied_at_us';

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

/**
 * Adds newly registered collectors to `keys.knownCollectors`, after their registration committed
 * (never before: the repair denies a known id PostgreSQL lacks, reconcile-deny-state.ts). Not
 * written (Redis away or refusing writes): logged, and the repair, which adds every id PostgreSQL
 * holds, is scheduled until Redis takes it. Until then a PostgreSQL restored from a backup older
 * than these registrations would leave their tokens accepted, as before the set existed.
 */
export async function recordKnown(deps: Deps, collectorIds: readonly string[]): Promise<void> {
  if (collectorIds.length === 0) return;
  try {
    await recordKnownCollectors(deps.redis, deps.keys, collectorIds);
  } catch (err) {
    deps.logger.error(
      { err, collectors: collectorIds.length, ids: collectorIds.slice(0, 20) },
      'collectors registered but not recorded as known in Redis; repairing from PostgreSQL until Redis takes it',
    );
    deps.redisWriteLost();
  }
}
