import { z } from 'zod';
import { AppError } from '@pga/contracts';
import { isUniqueViolation, withTransaction } from '@pga/db';
import { adminProcedure } from '../../trpc/init';
import { writeAudit } from '../../audit/write-audit';
import { actorOf } from '../../audit/actor';
import { GROUP_SELECT, GroupFields, GroupSchema, toGroup } from './group-schema';

export const CreateGroupInputSchema = z.object({
  name: GroupFields.name,
  description: GroupFields.description.optional(),
  color: GroupFields.color.optional(),
  icon: GroupFields.icon.optional(),
  display_order: GroupFields.display_order.optional(),
});

export const create = adminProcedure
  .input(CreateGroupInputSchema)
  .output(GroupSchema)
  .mutation(async ({ ctx, input }) => {
    try {
      return await withTransaction(ctx.deps.pool, async (db) => {
        const { rows } = await db.query(
          'INSERT INTO collector_groups (name, description, color, icon, display_order) VALUES ($1, $2, $3, $4, $5) RETURNING id',
          [input.name, input.description ?? null, input.color ?? null, input.icon ?? null, input.display_order ?? null],
        );
        const id = rows[0].id as string;
        await writeAudit(db, actorOf(ctx), {
          action: 'group.created',
          entityType: 'group',
          entityId: id,
          newValues: { ...input },
        });
        return toGroup((await db.query(`${GROUP_SELECT} WHERE g.id = $1`, [id])).rows[0]);
      });
    } catch (err) {
      if (isUniqueViolation(err, 'collector_groups_name_key'))
        throw new AppError('CONFLICT', `a group named "${input.name}" already exists`, { field: 'name' });
      throw err;
    }
  });
