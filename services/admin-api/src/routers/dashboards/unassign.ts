import { z } from 'zod';
import { AppError } from '@pga/contracts';
import { withTransaction } from '@pga/db';
import { adminProcedure } from '../../trpc/init';
import { writeAudit } from '../../audit/write-audit';
import { actorOf } from '../../audit/actor';
import { DashboardUidSchema } from './dashboard-schema';

export const unassign = adminProcedure
  .input(z.object({ collector_id: z.uuid(), dashboard_uid: DashboardUidSchema }))
  .output(z.object({ removed: z.literal(true) }))
  .mutation(async ({ ctx, input }) =>
    withTransaction(ctx.deps.pool, async (db) => {
      const { rowCount } = await db.query('DELETE FROM collector_dashboards WHERE collector_id = $1 AND dashboard_id = $2', [
        input.collector_id,
        input.dashboard_uid,
      ]);
      if (!rowCount) throw new AppError('NOT_FOUND', 'this dashboard is not assigned to this collector');
      await writeAudit(db, actorOf(ctx), {
        action: 'dashboard.unassigned',
        entityType: 'dashboard',
        entityId: input.dashboard_uid,
        collectorId: input.collector_id,
        details: { dashboard_uid: input.dashboard_uid },
      });
      return { removed: true as const };
    }),
  );
