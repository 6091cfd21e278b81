import { withTransaction } from '@pga/db';
import type { Context, SessionUser } from '../trpc/context';
import { lockCollector } from './lock-collector';
import { publishChange, setConfigVersion } from './after-commit';
import { findCollector } from './collector-row';
import type { Collector } from './collector-schema';
import { writeAudit } from '../audit/write-audit';
import { actorOf } from '../audit/actor';

/**
 * disable / enable: flips `enabled` (part of the collector's config, so config_version is bumped),
 * audits, then adds / removes the collector in the edges' deny set. Idempotent: repeating it
 * changes nothing and writes no audit row.
 */
export async function setEnabled(ctx: Context & { user: SessionUser }, id: string, enabled: boolean): Promise<Collector> {
  const { deps } = ctx;
  const version = await withTransaction(deps.pool, async (db) => {
    const row = await lockCollector(db, id);
    if (row.enabled === enabled) return undefined;
    const { rows } = await db.query<{ config_version: number }>(
      `UPDATE collectors SET enabled = $2, config_version = config_version + 1, last_modified_by = $3, last_modified_at = now(), updated_at = now()
        WHERE id = $1 RETURNING config_version`,
      [id, enabled, ctx.user.id],
    );
    await writeAudit(db, actorOf(ctx), {
      action: enabled ? 'collector.enabled' : 'collector.disabled',
      entityType: 'collector',
      collectorId: id,
      oldValues: { enabled: !enabled },
      newValues: { enabled },
    });
    return rows[0]!.config_version;
  });
  if (version !== undefined) {
    await setConfigVersion(deps, id, version);
    await publishChange(
      deps,
      enabled
        ? { collector_id: id, kind: 'enabled', allowCollector: true }
        : { collector_id: id, kind: 'disabled', denyCollector: true },
    );
  }
  return (await findCollector(deps.pool, id))!;
}
