import { AppError } from '@pga/contracts';
import type { PoolClient } from '@pga/db';

export interface LockedCollector {
  id: string;
  name: string;
  enabled: boolean;
  deleted_at: Date | null;
  config_version: number;
  [column: string]: unknown;
}

/**
 * Locks a collector's row for the rest of the transaction (FOR UPDATE), so concurrent admin
 * actions on one collector apply one after the other. `deleted`: which rows count as found.
 */
export async function lockCollector(
  db: PoolClient,
  id: string,
  { deleted = false }: { deleted?: boolean } = {},
): Promise<LockedCollector> {
  const { rows } = await db.query<LockedCollector>('SELECT * FROM collectors WHERE id = $1 FOR UPDATE', [id]);
  const row = rows[0];
  if (!row || (row.deleted_at !== null) !== deleted)
    throw new AppError(
      'NOT_FOUND',
      deleted ? 'no deleted collector with this id' : 'no such collector (it may have been deleted)',
    );
  return row;
}
