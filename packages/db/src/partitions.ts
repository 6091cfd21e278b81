import type { Pool } from './pool';
import { withTransaction } from './transaction';

export interface PartitionMaintenanceResult {
  created: string[];
  dropped: string[];
  /** Rows moved out of the DEFAULT partition into partitions created for them. */
  movedFromDefault: number;
  /** Rows deleted from the DEFAULT partition because they are older than the retention. */
  expiredFromDefault: number;
}

/** Partition DDL waits at most this long for its lock, so it never holds up ingest (it is tried again later). */
export const PARTITION_DDL_LOCK_TIMEOUT = '2s';

/**
 * Creates daily `collector_metrics` partitions `daysAhead` days ahead (and for any day that has rows
 * waiting in the DEFAULT partition) and, only when `retentionDays` is given, drops partitions
 * entirely older than that and deletes DEFAULT rows as old. Without `retentionDays` nothing is
 * dropped: only the writer knows METRICS_RETENTION_DAYS (migrations/0035).
 *
 * The work is done by the SQL function `pga_maintain_metric_partitions` (so operators can also call
 * it from psql), in a transaction whose DDL waits at most `lockTimeout` for its locks: a COPY in
 * flight or a long dashboard query must not make ingest queue behind a waiting CREATE or DROP.
 * A lock timeout is SQLSTATE 55P03.
 */
export async function maintainPartitions(
  pool: Pool,
  {
    daysAhead = 7,
    retentionDays,
    lockTimeout = PARTITION_DDL_LOCK_TIMEOUT,
  }: { daysAhead?: number; retentionDays?: number; lockTimeout?: string } = {},
): Promise<PartitionMaintenanceResult> {
  const row = await withTransaction(pool, async (client) => {
    await client.query("SELECT set_config('lock_timeout', $1, true)", [lockTimeout]);
    const { rows } = await client.query<{ created: string[]; dropped: string[]; moved: string; expired: string }>(
      'SELECT created, dropped, moved, expired FROM pga_maintain_metric_partitions($1, $2)',
      [daysAhead, retentionDays ?? null],
    );
    return rows[0]!;
  });
  return {
    created: row.created,
    dropped: row.dropped,
    movedFromDefault: Number(row.moved),
    expiredFromDefault: Number(row.expired),
  };
}
