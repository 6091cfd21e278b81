import { z } from 'zod';
import { AppError } from '@pga/contracts';
import { withTransaction } from '@pga/db';
import { adminProcedure } from '../../trpc/init';
import { writeAudit } from '../../audit/write-audit';
import { actorOf } from '../../audit/actor';
import { DashboardNameSchema, DashboardUidSchema } from './dashboard-schema';

/**
 * `auto_assign` by group: the dashboard goes to every current collector of the group now, and to
 * each collector that joins the group later (registered, enrolled or moved; trigger in migration 0012).
 */
export const assignToGroup = adminProcedure
  .input(z.object({ group_id: z.uuid(), dashboard_uid: DashboardUidSchema, dashboard_name: DashboardNameSchema.optional() }))
  .output(z.object({ group_id: z.uuid(), dashboard_uid: z.string(), assigned_collectors: z.number().int() }))
  .mutation(async ({ ctx, input }) =>
    withTransaction(ctx.deps.pool, async (db) => {
      const group = await db.query('SELECT name FROM collector_groups WHERE id = $1', [input.group_id]);
      if (!group.rowCount) throw new AppError('NOT_FOUND', 'no such group');
      await db.query(
        `INSERT INTO group_dashboards (group_id, dashboard_id, dashboard_name) VALUES ($1, $2, $3)
         ON CONFLICT (group_id, dashboard_id) DO UPDATE SET dashboard_name = coalesce(EXCLUDED.dashboard_name, group_dashboards.dashboard_name)`,
        [input.group_id, input.dashboard_uid, input.dashboard_name ?? null],
      );
      const { rowCount } = await db.query(
        `INSERT INTO collector_dashboards (collector_id, dashboard_id, dashboard_name, auto_assign)
         SELECT id, $2, $3, true FROM collectors WHERE group_id = $1 AND deleted_at IS NULL
         ON CONFLICT (collector_id, dashboard_id) DO NOTHING`,
        [input.group_id, input.dashboard_uid, input.dashboard_name ?? null],
      );
      await writeAudit(db, actorOf(ctx), {
        action: 'dashboard.group_assigned',
        entityType: 'group',
        entityId: input.group_id,
        details: {
          dashboard_uid: input.dashboard_uid,
          dashboard_name: input.dashboard_name ?? null,
          assigned_collectors: rowCount ?? 0,
        },
      });
      return { group_id: input.group_id, dashboard_uid: input.dashboard_uid, assigned_collectors: rowCount ?? 0 };
    }),
  );
