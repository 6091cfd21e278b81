import { z } from 'zod';
import { AppError } from '@pga/contracts';
import { withTransaction } from '@pga/db';
import { adminProcedure } from '../../trpc/init';
import { writeAudit } from '../../audit/write-audit';
import { actorOf } from '../../audit/actor';

/**
 * Deletes a group. While collectors still belong to it the answer is CONFLICT naming how many,
 * unless `move_collectors_to` says where they go (a group id, or null for "no group").
 */
export const deleteGroup = adminProcedure
  .input(z.object({ id: z.uuid(), move_collectors_to: z.uuid().nullable().optional() }))
  .output(z.object({ id: z.uuid(), moved_collectors: z.number().int() }))
  .mutation(async ({ ctx, input }) =>
    withTransaction(ctx.deps.pool, async (db) => {
      const { rows } = await db.query('SELECT name FROM collector_groups WHERE id = $1 FOR UPDATE', [input.id]);
      if (!rows[0]) throw new AppError('NOT_FOUND', 'no such group');
      const name = rows[0].name as string;
      const count = (
        await db.query('SELECT count(*)::int AS n FROM collectors WHERE group_id = $1 AND deleted_at IS NULL', [input.id])
      ).rows[0].n as number;
      if (count > 0 && input.move_collectors_to === undefined)
        throw new AppError(
          'CONFLICT',
          `group "${name}" still has ${count} collector${count === 1 ? '' : 's'}: move ${count === 1 ? 'it' : 'them'} to another group first`,
          {
            field: 'move_collectors_to',
          },
        );
      if (input.move_collectors_to === input.id)
        throw new AppError('VALIDATION_FAILED', 'move_collectors_to: cannot move collectors into the group being deleted', {
          field: 'move_collectors_to',
        });
      if (input.move_collectors_to) {
        const target = await db.query('SELECT 1 FROM collector_groups WHERE id = $1', [input.move_collectors_to]);
        if (!target.rowCount)
          throw new AppError('VALIDATION_FAILED', 'move_collectors_to: no such group', { field: 'move_collectors_to' });
      }
      // Soft-deleted collectors still reference the group: they follow the live ones (or lose the group).
      await db.query('UPDATE collectors SET group_id = $2, updated_at = now() WHERE group_id = $1', [
        input.id,
        input.move_collectors_to ?? null,
      ]);
      await db.query('DELETE FROM collector_groups WHERE id = $1', [input.id]);
      await writeAudit(db, actorOf(ctx), {
        action: 'group.deleted',
        entityType: 'group',
        entityId: input.id,
        oldValues: { name },
        details: { moved_collectors: count, moved_to: input.move_collectors_to ?? null },
      });
      return { id: input.id, moved_collectors: count };
    }),
  );
