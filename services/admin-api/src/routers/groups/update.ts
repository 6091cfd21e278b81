import { z } from 'zod';
import { AppError } from '@pga/contracts';
import { isUniqueViolation, withTransaction } from '@pga/db';
import { adminProcedure } from '../../trpc/init';
import { diffValues, writeAudit } from '../../audit/write-audit';
import { actorOf } from '../../audit/actor';
import { GROUP_SELECT, GroupFields, GroupSchema, toGroup } from './group-schema';

export const UpdateGroupInputSchema = z.object({
  id: z.uuid(),
  name: GroupFields.name.optional(),
  description: GroupFields.description.optional(),
  color: GroupFields.color.optional(),
  icon: GroupFields.icon.optional(),
  display_order: GroupFields.display_order.optional(),
});

const FIELDS = ['name', 'description', 'color', 'icon', 'display_order'] as const;

export const update = adminProcedure
  .input(UpdateGroupInputSchema)
  .output(GroupSchema)
  .mutation(async ({ ctx, input }) => {
    try {
      return await withTransaction(ctx.deps.pool, async (db) => {
        const { rows } = await db.query('SELECT * FROM collector_groups WHERE id = $1 FOR UPDATE', [input.id]);
        if (!rows[0]) throw new AppError('NOT_FOUND', 'no such group');
        const before = Object.fromEntries(FIELDS.map((f) => [f, rows[0][f]]));
        const after = Object.fromEntries(FIELDS.map((f) => [f, input[f] === undefined ? rows[0][f] : input[f]]));
        const diff = diffValues(before, after);
        if (diff) {
          await db.query(
            'UPDATE collector_groups SET name = $2, description = $3, color = $4, icon = $5, display_order = $6, updated_at = now() WHERE id = $1',
            [input.id, after.name, after.description, after.color, after.icon, after.display_order],
          );
          await writeAudit(db, actorOf(ctx), { action: 'group.updated', entityType: 'group', entityId: input.id, ...diff });
        }
        return toGroup((await db.query(`${GROUP_SELECT} WHERE g.id = $1`, [input.id])).rows[0]);
      });
    } catch (err) {
      if (isUniqueViolation(err, 'collector_groups_name_key'))
        throw new AppError('CONFLICT', `a group named "${input.name}" already exists`, { field: 'name' });
      throw err;
    }
  });
