import { AppError } from '@pga/contracts';
import type { Pool, PoolClient } from '@pga/db';

/** Group id from a name or an id; null when neither is given. Unknown → VALIDATION_FAILED naming the field. */
export async function resolveGroupId(
  db: Pool | PoolClient,
  { group, group_id }: { group?: string | undefined; group_id?: string | null | undefined },
): Promise<string | null> {
  if (group_id === null) return null;
  if (group_id) {
    const { rows } = await db.query('SELECT id, name FROM collector_groups WHERE id = $1', [group_id]);
    if (!rows[0]) throw new AppError('VALIDATION_FAILED', 'group_id: no such group', { field: 'group_id' });
    if (group && rows[0].name !== group)
      throw new AppError('VALIDATION_FAILED', 'group: does not match group_id', { field: 'group' });
    return rows[0].id;
  }
  if (!group) return null;
  const { rows } = await db.query('SELECT id FROM collector_groups WHERE name = $1', [group]);
  if (!rows[0]) throw new AppError('VALIDATION_FAILED', `group: no group named "${group}"`, { field: 'group' });
  return rows[0].id;
}
