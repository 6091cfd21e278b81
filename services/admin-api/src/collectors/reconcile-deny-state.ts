import { readDatabaseDenyState, withTransaction } from '@pga/db';
import type { Deps } from '../deps';
import { publishChange } from './after-commit';

/**
 * Makes sure the edges' deny sets hold everything PostgreSQL says is refused: every revoked token
 * not more than an hour past its expiry (DENIED_AFTER_EXPIRY; the writer's retention prunes older
 * ones) and every disabled or deleted collector (the deleted ones also in the deleted
 * set), as `readDatabaseDenyState` reads them (the edges union the same read with Redis's at every
 * load). Runs at start and whenever the Redis connection becomes ready again, so a publish lost to a
 * Redis outage (or a Redis that lost its data) is repaired. It only adds — removing is left to
 * enable/restore, which publish it themselves. Each repair re-reads the collector under its row
 * lock and publishes before releasing it, so it cannot re-deny a collector that an admin enables
 * at the same moment (enable publishes its removal after its own commit, i.e. after this lock is
 * released).
 * Returns the number of collectors it had to re-publish.
 */
export async function reconcileDenyState(deps: Deps): Promise<number> {
  const { pool, redis, keys } = deps;
  const [{ tokens, collectors: refused }, deniedJtis, deniedCollectors, deletedCollectors] = await Promise.all([
    readDatabaseDenyState(pool),
    redis.smembers(keys.deniedJtis).then((m) => new Set(m)),
    redis.smembers(keys.deniedCollectors).then((m) => new Set(m)),
    redis.smembers(keys.deletedCollectors).then((m) => new Set(m)),
  ]);
  const missingJtis = new Map(tokens.map((t) => [t.collector_id, t.jtis.filter((j) => !deniedJtis.has(j))]));
  // Missing from the denied set, or deleted but not marked so (the edges would answer 403, not 401).
  const missingCollectors = new Map(
    refused
      .filter((c) => !deniedCollectors.has(c.id) || (c.deleted && !deletedCollectors.has(c.id)))
      .map((c) => [c.id, c.deleted]),
  );
  const ids = new Set([...[...missingJtis].filter(([, j]) => j.length).map(([id]) => id), ...missingCollectors.keys()]);
  for (const id of ids) {
    await withTransaction(pool, async (db) => {
      const { rows } = await db.query<{ refused: boolean; deleted: boolean }>(
        'SELECT (NOT enabled OR deleted_at IS NOT NULL) AS refused, deleted_at IS NOT NULL AS deleted FROM collectors WHERE id = $1 FOR UPDATE',
        [id],
      );
      const state = rows[0];
      if (!state) return;
      const jtis = (missingJtis.get(id) ?? []).filter(Boolean);
      if (!state.refused && jtis.length === 0) return;
      await publishChange(deps, {
        collector_id: id,
        kind: state.refused ? (state.deleted ? 'deleted' : 'disabled') : 'revoked',
        ...(jtis.length ? { jtis } : {}),
        ...(state.refused ? { denyCollector: true } : {}),
      });
    });
  }
  if (ids.size) deps.logger.warn({ collectors: ids.size }, 'deny state was missing entries; re-published them');
  return ids.size;
}
