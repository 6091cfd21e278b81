import { z } from 'zod';
import { authedProcedure } from '../../trpc/init';
import { DashboardAssignmentSchema } from '../../collectors/collector-schema';
import { GroupDashboardSchema } from './dashboard-schema';

/** A collector's dashboards, or a group's auto-assign rules. */
export const list = authedProcedure
  .input(z.union([z.object({ collector_id: z.uuid() }), z.object({ group_id: z.uuid() })]))
  .output(z.object({ assignments: z.array(DashboardAssignmentSchema), group_rules: z.array(GroupDashboardSchema) }))
  .query(async ({ ctx, input }) => {
    const { pool } = ctx.deps;
    if ('collector_id' in input) {
      const { rows } = await pool.query(
        'SELECT dashboard_id, dashboard_name, auto_assign, assigned_at FROM collector_dashboards WHERE collector_id = $1 ORDER BY assigned_at, dashboard_id',
        [input.collector_id],
      );
      return {
        assignments: rows.map((r) => ({
          dashboard_uid: r.dashboard_id,
          dashboard_name: r.dashboard_name,
          auto_assign: r.auto_assign,
          assigned_at: r.assigned_at.toISOString(),
        })),
        group_rules: [],
      };
    }
    const { rows } = await pool.query(
      'SELECT group_id, dashboard_id, dashboard_name, created_at FROM group_dashboards WHERE group_id = $1 ORDER BY created_at',
      [input.group_id],
    );
    return {
      assignments: [],
      group_rules: rows.map((r) => ({
        group_id: r.group_id,
        dashboard_uid: r.dashboard_id,
        dashboard_name: r.dashboard_name,
        created_at: r.created_at.toISOString(),
      })),
    };
  });
