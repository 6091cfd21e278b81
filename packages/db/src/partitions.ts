import type { Pool } from './pool';

export interface PartitionMaintenanceResult {
  created: string[];
  dropped: string[];
  /** Rows moved out of the DEFAULT partition into partitions created for them. */
  movedFromDefault: number;
}

/**
 * Creates daily `collector_metrics` partitions `daysAhead` days ahead (and for any day that has rows
 * waiting in the DEFAULT partition), and drops partitions entirely older than `retentionDays`.
 * The work is done by the SQL function `pga_maintain_metric_partitions` (migrations/0002), so
 * operators can also call it from psql.
 */
export async function maintainPartitions(
  pool: Pool,
  { daysAhead = 7, retentionDays = 14 }: { daysAhead?: number; retentionDays?: number } = {},
): Promise<PartitionMaintenanceResult> {
  const { rows } = await pool.query<{ created: string[]; dropped: string[]; moved: string }>(
    'SELECT created, dropped, moved FROM pga_maintain_metric_partitions($1, $2)',
    [daysAhead, retentionDays],
  );
  const row = rows[0]!;
  return { created: row.created, dropped: row.dropped, movedFromDefault: Number(row.moved) };
}
