import { z } from 'zod';
import { revokeCollectorTokens, withTransaction } from '@pga/db';
import { adminProcedure } from '../../trpc/init';
import { lockCollector } from '../../collectors/lock-collector';
import { DENIED_AT_US, publishChange } from '../../collectors/after-commit';
import { writeAudit } from '../../audit/write-audit';
import { clearCollectorMailbox, DROP_WAITING_COMMANDS } from '../../collectors/commands';
import { actorOf } from '../../audit/actor';

/**
 * Soft delete: sets deleted_at (the partial unique index then frees the name), revokes every live
 * token, tells the edges to refuse the collector, and drops its pending commands (marked dropped,
 * mailbox emptied). `restore` brings it back, without them.
 */
export const deleteCollector = adminProcedure
  .input(z.object({ id: z.uuid() }))
  .output(z.object({ id: z.uuid(), deleted_at: z.string(), revoked_tokens: z.number().int() }))
  .mutation(async ({ ctx, input }) => {
    const { deps } = ctx;
    const result = await withTransaction(deps.pool, async (db) => {
      const row = await lockCollector(db, input.id);
      const { rows } = await db.query<{ deleted_at: Date; denied_at_us: string }>(
        `UPDATE collectors SET deleted_at = clock_timestamp(), last_modified_by = $2, last_modified_at = clock_timestamp(), updated_at = now() WHERE id = $1
         RETURNING deleted_at, ${DENIED_AT_US}`,
        [row.id, ctx.user.id],
      );
      const jtis = await revokeCollectorTokens(db, row.id, 'deleted');
      await db.query(DROP_WAITING_COMMANDS, [row.id, 'collector_deleted']);
      await writeAudit(db, actorOf(ctx), {
        action: 'collector.deleted',
        entityType: 'collector',
        collectorId: row.id,
        details: { name: row.name, revoked_jtis: jtis },
      });
      return { deletedAt: rows[0]!.deleted_at, deniedAtUs: rows[0]!.denied_at_us, jtis };
    });
    await publishChange(deps, {
      collector_id: input.id,
      kind: 'deleted',
      jtis: result.jtis,
      denyCollector: true,
      deniedAtUs: result.deniedAtUs,
    });
    await clearCollectorMailbox(deps, input.id);
    return { id: input.id, deleted_at: result.deletedAt.toISOString(), revoked_tokens: result.jtis.length };
  });
