import { SqlFilter } from '../../db/sql-filter';
import { z } from 'zod';
import { authedProcedure } from '../../trpc/init';
import { pageFields, pageOf } from '../page-schema';
import { DateTimeSchema } from '../date-time-schema';

export const AuditEntrySchema = z.object({
  id: z.string(),
  action: z.string(),
  entity_type: z.string(),
  entity_id: z.string().nullable(),
  collector_id: z.uuid().nullable(),
  actor_id: z.uuid().nullable(),
  actor_name: z.string().nullable(),
  ip_address: z.string().nullable(),
  user_agent: z.string().nullable(),
  details: z.unknown().nullable(),
  old_values: z.record(z.string(), z.unknown()).nullable(),
  new_values: z.record(z.string(), z.unknown()).nullable(),
  created_at: z.string(),
});

export const ListAuditInputSchema = z
  .object({
    collector_id: z.uuid().optional(),
    actor_id: z.uuid().optional(),
    /** Exact action (`collector.updated`) or a prefix ending in `.` (`collector.`). */
    action: z.string().trim().min(1).max(50).optional(),
    entity_type: z.string().trim().min(1).max(50).optional(),
    from: DateTimeSchema.optional(),
    to: DateTimeSchema.optional(),
    ...pageFields(500),
  })
  .default({ page: 1, page_size: 50 });

/** The audit log, newest first, filtered and paginated with a total. */
export const list = authedProcedure
  .input(ListAuditInputSchema)
  .output(pageOf(AuditEntrySchema))
  .query(async ({ ctx, input }) => {
    const f = new SqlFilter();
    if (input.collector_id) f.add((p) => `collector_id = ${p}`, input.collector_id);
    if (input.actor_id) f.add((p) => `actor_id = ${p}`, input.actor_id);
    if (input.action?.endsWith('.')) f.add((p) => `starts_with(action, ${p})`, input.action);
    else if (input.action) f.add((p) => `action = ${p}`, input.action);
    if (input.entity_type) f.add((p) => `entity_type = ${p}`, input.entity_type);
    if (input.from) f.add((p) => `created_at >= ${p}`, input.from);
    if (input.to) f.add((p) => `created_at < ${p}`, input.to);
    const filter = f.where;
    const [{ rows }, count] = await Promise.all([
      ctx.deps.pool.query(
        `SELECT id::text, action, entity_type, entity_id, collector_id, actor_id, actor_name, host(ip_address) AS ip_address, user_agent,
                details, old_values, new_values, created_at
           FROM collector_audit_log ${filter}
          ORDER BY created_at DESC, id DESC LIMIT ${f.after(1)} OFFSET ${f.after(2)}`,
        [...f.params, input.page_size, (input.page - 1) * input.page_size],
      ),
      ctx.deps.pool.query(`SELECT count(*)::int AS n FROM collector_audit_log ${filter}`, f.params),
    ]);
    return {
      items: rows.map((r) => ({ ...r, created_at: r.created_at.toISOString() })),
      total: count.rows[0].n,
      page: input.page,
      page_size: input.page_size,
    };
  });
