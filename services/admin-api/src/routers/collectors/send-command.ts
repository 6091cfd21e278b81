import { z } from 'zod';
import { AppError, CollectorCommandActionSchema } from '@pga/contracts';
import { withTransaction } from '@pga/db';
import { adminProcedure } from '../../trpc/init';
import { lockCollector } from '../../collectors/lock-collector';
import { CommandSchema } from '../../collectors/collector-schema';
import { writeAudit } from '../../audit/write-audit';
import { actorOf } from '../../audit/actor';

/**
 * Queues stop / restart / resume for the collector's next heartbeat (CONTRACT.md): the row in
 * collector_commands is the record, the Redis list `commands(id)` the mailbox the edge drains.
 */
export const sendCommand = adminProcedure
  .input(z.object({ id: z.uuid(), action: CollectorCommandActionSchema }))
  .output(CommandSchema)
  .mutation(async ({ ctx, input }) => {
    const { deps } = ctx;
    const command = await withTransaction(deps.pool, async (db) => {
      await lockCollector(db, input.id);
      const { rows } = await db.query<{ id: string; requested_at: Date }>(
        'INSERT INTO collector_commands (collector_id, action, requested_by) VALUES ($1, $2, $3) RETURNING id, requested_at',
        [input.id, input.action, ctx.user.id],
      );
      const cmd = rows[0]!;
      await writeAudit(db, actorOf(ctx), {
        action: 'collector.command',
        entityType: 'collector',
        collectorId: input.id,
        details: { command_id: cmd.id, action: input.action },
      });
      // Inside the transaction: if Redis refuses, the command is not recorded either, and the
      // admin gets an error to retry instead of a command that would never be delivered.
      await deps.redis
        .rpush(deps.keys.commands(input.id), JSON.stringify({ id: cmd.id, action: input.action }))
        .catch((err: unknown) => {
          deps.logger.warn({ err, collectorId: input.id }, 'could not queue a collector command');
          throw new AppError('UNAVAILABLE', 'the command could not be queued (Redis is unreachable); try again shortly');
        });
      return cmd;
    });
    return {
      id: command.id,
      action: input.action,
      requested_at: command.requested_at.toISOString(),
      delivered_at: null,
      requested_by: ctx.user.username,
    };
  });
