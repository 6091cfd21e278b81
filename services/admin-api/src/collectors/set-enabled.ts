import { AppError } from '@pga/contracts';
import { withTransaction } from '@pga/db';
import type { Context, SessionUser } from '../trpc/context';
import { lockCollector } from './lock-collector';
import { DENIED_AT_US, publishChange, setConfigVersion } from './after-commit';
import { findCollector } from './collector-row';
import type { Collector } from './collector-schema';
import { writeAudit } from '../audit/write-audit';
import { actorOf } from '../audit/actor';

/**
 * disable / enable: flips `enabled` (part of the collector's config, so config_version is bumped),
 * audits, then adds / removes the collector in the edges' deny set. Idempotent: repeating it
 * changes nothing and writes no audit row — except enabling a collector PostgreSQL says is enabled
 * while Redis's deny set still refuses it (PostgreSQL restored from a backup older than a disable
 * or delete: the repair keeps such a collector refused, reconcile-deny-state.ts). The admin's
 * explicit enable wins: it is audited (the repair's evidence, should its publish be lost) and takes
 * the collector out of the denied and deleted sets.
 */
export async function setEnabled(ctx: Context & { user: SessionUser }, id: string, enabled: boolean): Promise<Collector> {
  const { deps } = ctx;
  const done = await withTransaction(deps.pool, async (db) => {
    const row = await lockCollector(db, id);
    if (row.enabled === enabled) {
      if (!enabled || !(await stillRefused(ctx, id))) return undefined;
      await db.query('UPDATE collectors SET last_modified_by = $2, last_modified_at = now(), updated_at = now() WHERE id = $1', [
        id,
        ctx.user.id,
      ]);
      await writeAudit(db, actorOf(ctx), {
        action: 'collector.enabled',
        entityType: 'collector',
        collectorId: id,
        details: { reason: 'enabled in PostgreSQL but still refused by the deny state in Redis' },
        oldValues: { enabled: true },
        newValues: { enabled: true },
      });
      return { version: undefined, deniedAtUs: undefined };
    }
    const { rows } = await db.query<{ config_version: number; denied_at_us: string }>(
      `UPDATE collectors SET enabled = $2, config_version = config_version + 1, last_modified_by = $3, last_modified_at = clock_timestamp(), updated_at = now()
        WHERE id = $1 RETURNING config_version, ${DENIED_AT_US}`,
      [id, enabled, ctx.user.id],
    );
    await writeAudit(db, actorOf(ctx), {
      action: enabled ? 'collector.enabled' : 'collector.disabled',
      entityType: 'collector',
      collectorId: id,
      oldValues: { enabled: !enabled },
      newValues: { enabled },
    });
    return { version: rows[0]!.config_version, deniedAtUs: rows[0]!.denied_at_us };
  });
  if (done) {
    if (done.version !== undefined) await setConfigVersion(deps, id, done.version);
    await publishChange(
      deps,
      enabled
        ? // `restored` also takes it out of the deleted set (an edge then asks Redis and PostgreSQL).
          { collector_id: id, kind: done.version === undefined ? 'restored' : 'enabled', allowCollector: true }
        : { collector_id: id, kind: 'disabled', denyCollector: true, deniedAtUs: done.deniedAtUs },
    );
  }
  return (await findCollector(deps.pool, id))!;
}

/** Whether Redis's deny sets still refuse a collector (read under its row lock). */
async function stillRefused(ctx: Context, id: string): Promise<boolean> {
  const { deps } = ctx;
  try {
    const [denied, deleted] = await Promise.all([
      deps.redis.sismember(deps.keys.deniedCollectors, id),
      deps.redis.sismember(deps.keys.deletedCollectors, id),
    ]);
    return denied === 1 || deleted === 1;
  } catch (err) {
    deps.logger.warn({ err, collectorId: id }, 'could not read whether Redis still refuses an enabled collector');
    throw new AppError('UNAVAILABLE', 'could not check the deny state (Redis is unreachable); try again shortly');
  }
}
