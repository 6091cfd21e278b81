import { z } from 'zod';
import { AppError } from '@pga/contracts';
import { isUniqueViolation, recordIssuedToken, withTransaction } from '@pga/db';
import { adminProcedure } from '../../trpc/init';
import { lockCollector } from '../../collectors/lock-collector';
import { CollectorSchema, IssuedCredentialsSchema } from '../../collectors/collector-schema';
import { findCollector } from '../../collectors/collector-row';
import { credentialsFor } from '../../collectors/credentials';
import { publishChange } from '../../collectors/after-commit';
import { writeAudit } from '../../audit/write-audit';
import { DROP_WAITING_COMMANDS } from '../../collectors/commands';
import { actorOf } from '../../audit/actor';

/**
 * Undoes a soft delete. Its tokens were revoked on delete, so restoring issues a new one (shown
 * once). Refused with CONFLICT when another collector took the name meanwhile.
 */
export const restore = adminProcedure
  .input(z.object({ id: z.uuid() }))
  .output(IssuedCredentialsSchema.extend({ collector: CollectorSchema }))
  .mutation(async ({ ctx, input }) => {
    const { deps } = ctx;
    const issued = await deps.tokens.issue(input.id);
    let enabled = false;
    try {
      await withTransaction(deps.pool, async (db) => {
        const row = await lockCollector(db, input.id, { deleted: true });
        enabled = row.enabled;
        await db.query(
          'UPDATE collectors SET deleted_at = NULL, last_modified_by = $2, last_modified_at = clock_timestamp(), updated_at = now() WHERE id = $1',
          [row.id, ctx.user.id],
        );
        await recordIssuedToken(db, row.id, issued, { rotated: true });
        // Nothing from before the delete reaches the restored collector: the delete emptied its
        // mailbox, but only if Redis was reachable then (and an edge may have put back a drained
        // command since). Inside the transaction, like sendCommand: no restore with a stale mailbox.
        await db.query(DROP_WAITING_COMMANDS, [row.id, 'collector_deleted']);
        await deps.redis.del(deps.keys.commands(row.id)).catch((err: unknown) => {
          deps.logger.warn({ err, collectorId: row.id }, 'could not empty the command mailbox of a restored collector');
          throw new AppError('UNAVAILABLE', 'the collector could not be restored (Redis is unreachable); try again shortly');
        });
        await writeAudit(db, actorOf(ctx), {
          action: 'collector.restored',
          entityType: 'collector',
          collectorId: row.id,
          details: { name: row.name, token_jti: issued.jti },
        });
      });
    } catch (err) {
      if (isUniqueViolation(err, 'collectors_name_key'))
        throw new AppError('CONFLICT', 'another collector now uses this name: rename that one first', { field: 'name' });
      throw err;
    }
    // A disabled collector stays refused after restore until it is enabled.
    await publishChange(deps, { collector_id: input.id, kind: 'restored', ...(enabled ? { allowCollector: true } : {}) });
    return { collector: (await findCollector(deps.pool, input.id))!, ...credentialsFor(deps.config, input.id, issued) };
  });
