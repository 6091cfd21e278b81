import { z } from 'zod';
import { AppError } from '@pga/contracts';
import { authedProcedure } from '../../trpc/init';
import { CollectorDetailSchema } from '../../collectors/collector-schema';
import { findCollector } from '../../collectors/collector-row';

/** One collector with status, counters, dashboards and recent commands; never a password or token. */
export const get = authedProcedure
  .input(z.object({ id: z.uuid(), include_deleted: z.boolean().default(false) }))
  .output(CollectorDetailSchema)
  .query(async ({ ctx, input }) => {
    const { pool } = ctx.deps;
    // The three reads at once (one round trip's wait, not two): a collector that does not exist has
    // no dashboards or commands either, and is refused below as before.
    const [collector, dashboards, commands] = await Promise.all([
      findCollector(pool, input.id, { includeDeleted: input.include_deleted }),
      pool.query(
        `SELECT dashboard_id, dashboard_name, auto_assign, assigned_at FROM collector_dashboards
          WHERE collector_id = $1 ORDER BY assigned_at, dashboard_id`,
        [input.id],
      ),
      pool.query(
        `SELECT cc.id, cc.action, cc.requested_at, cc.expires_at, cc.delivered_at, cc.dropped_at, cc.drop_reason,
                u.username,
                CASE WHEN cc.delivered_at IS NOT NULL THEN 'delivered'
                     WHEN cc.dropped_at IS NOT NULL THEN 'dropped'
                     WHEN cc.expires_at <= now() THEN 'expired'
                     ELSE 'pending' END AS state
           FROM collector_commands cc LEFT JOIN users u ON u.id = cc.requested_by
          WHERE cc.collector_id = $1 ORDER BY cc.requested_at DESC LIMIT 20`,
        [input.id],
      ),
    ]);
    if (!collector) throw new AppError('NOT_FOUND', 'no such collector');
    return {
      ...collector,
      dashboards: dashboards.rows.map((d) => ({
        dashboard_uid: d.dashboard_id,
        dashboard_name: d.dashboard_name,
        auto_assign: d.auto_assign,
        assigned_at: d.assigned_at.toISOString(),
      })),
      recent_commands: commands.rows.map((c) => ({
        id: c.id,
        action: c.action,
        state: c.state,
        requested_at: c.requested_at.toISOString(),
        expires_at: c.expires_at.toISOString(),
        delivered_at: c.delivered_at?.toISOString() ?? null,
        dropped_at: c.dropped_at?.toISOString() ?? null,
        drop_reason: c.drop_reason,
        requested_by: c.username,
      })),
    };
  });
