import type { Pool, PoolClient } from './pool';

/** What PostgreSQL says the edges must refuse (the truth the Redis deny sets mirror). */
export interface DatabaseDenyState {
  /** Revoked tokens not yet past `DENIED_AFTER_EXPIRY`, by collector. */
  tokens: { collector_id: string; jtis: string[] }[];
  /** Disabled or deleted collectors; `deleted`: deleted (401 at the edge), else disabled (403). */
  collectors: { id: string; deleted: boolean }[];
}

/**
 * How long past its expiry a revoked token stays in the deny state, in PostgreSQL's words: the edges
 * check `exp` by their own clocks, which may run behind PostgreSQL's. After it, the writer's
 * retention removes the token from Redis's deny set, and the edges drop it at their next load.
 */
export const DENIED_AFTER_EXPIRY = "interval '1 hour'";

/**
 * Reads the deny state from PostgreSQL: every revoked token not long expired (DENIED_AFTER_EXPIRY) and every disabled or
 * deleted collector (or only `collectorId`'s). One statement, so one connection and one snapshot.
 * The admin's reconciliation compares it with Redis; the edge unions it with Redis's at every load.
 */
export async function readDatabaseDenyState(
  db: Pool | PoolClient,
  { collectorId }: { collectorId?: string } = {},
): Promise<DatabaseDenyState> {
  const { rows } = await db.query<DatabaseDenyState>(
    `SELECT
       (SELECT coalesce(json_agg(t), '[]') FROM (
          SELECT collector_id, array_agg(jti::text) AS jtis FROM collector_tokens
           WHERE revoked_at IS NOT NULL AND expires_at > now() - ${DENIED_AFTER_EXPIRY} AND ($1::uuid IS NULL OR collector_id = $1::uuid)
           GROUP BY collector_id) t) AS tokens,
       (SELECT coalesce(json_agg(c), '[]') FROM (
          SELECT id, deleted_at IS NOT NULL AS deleted FROM collectors
           WHERE (NOT enabled OR deleted_at IS NOT NULL) AND ($1::uuid IS NULL OR id = $1::uuid)) c) AS collectors`,
    [collectorId ?? null],
  );
  return rows[0]!;
}
