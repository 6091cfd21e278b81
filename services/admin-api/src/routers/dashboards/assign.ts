import { z } from 'zod';
import { withTransaction } from '@pga/db';
import { adminProcedure } from '../../trpc/init';
import { lockCollector } from '../../collectors/lock-collector';
import { writeAudit } from '../../audit/write-audit';
import { actorOf } from '../../audit/actor';
import { DashboardNameSchema, DashboardUidSchema } from './dashboard-schema';

/** Assigns a Grafana dashboard to one collector (again: updates its cached name). */
export const assign = adminProcedure
  .input(z.object({ collector_id: z.uuid(), dashboard_uid: DashboardUidSchema, dashboard_name: DashboardNameSchema.optional() }))
  .output(z.object({ collector_id: z.uuid(), dashboard_uid: z.string() }))
  .mutation(async ({ ctx, input }) =>
    withTransaction(ctx.deps.pool, async (db) => {
      await lockCollector(db, input.collector_id);
      await db.query(
        `INSERT INTO collector_dashboards (collector_id, dashboard_id, dashboard_name) VALUES ($1, $2, $3)
         ON CONFLICT (collector_id, dashboard_id) DO UPDATE SET dashboard_name = coalesce(EXCLUDED.dashboard_name, collector_dashboards.dashboard_name)`,
        [input.collector_id, input.dashboard_uid, input.dashboard_name ?? null],
      );
      await writeAudit(db, actorOf(ctx), {
        action: 'dashboard.assigned',
        entityType: 'dashboard',
        entityId: input.dashboard_uid,
        collectorId: input.collector_id,
        details: { dashboard_uid: input.dashboard_uid, dashboard_name: input.dashboard_name ?? null },
      });
      return { collector_id: input.collector_id, dashboard_uid: input.dashboard_uid };
    }),
  );
