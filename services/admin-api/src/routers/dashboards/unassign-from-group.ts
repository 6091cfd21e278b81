import { z } from 'zod';
import { AppError } from '@pga/contracts';
import { withTransaction } from '@pga/db';
import { adminProcedure } from '../../trpc/init';
import { writeAudit } from '../../audit/write-audit';
import { actorOf } from '../../audit/actor';
import { DashboardUidSchema } from './dashboard-schema';

/** Ends a group's auto-assignment and removes the assignments it made (manual ones stay). */
export const unassignFromGroup = adminProcedure
  .input(z.object({ group_id: z.uuid(), dashboard_uid: DashboardUidSchema }))
  .output(z.object({ removed_assignments: z.number().int() }))
  .mutation(async ({ ctx, input }) =>
    withTransaction(ctx.deps.pool, async (db) => {
      const rule = await db.query('DELETE FROM group_dashboards WHERE group_id = $1 AND dashboard_id = $2', [
        input.group_id,
        input.dashboard_uid,
      ]);
      if (!rule.rowCount) throw new AppError('NOT_FOUND', 'this dashboard is not auto-assigned to this group');
      const { rowCount } = await db.query(
        `DELETE FROM collector_dashboards cd USING collectors c
          WHERE cd.collector_id = c.id AND c.group_id = $1 AND cd.dashboard_id = $2 AND cd.auto_assign`,
        [input.group_id, input.dashboard_uid],
      );
      await writeAudit(db, actorOf(ctx), {
        action: 'dashboard.group_unassigned',
        entityType: 'group',
        entityId: input.group_id,
        details: { dashboard_uid: input.dashboard_uid, removed_assignments: rowCount ?? 0 },
      });
      return { removed_assignments: rowCount ?? 0 };
    }),
  );
