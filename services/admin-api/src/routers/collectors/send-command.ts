import { z } from 'zod';
import { AppError, CollectorCommandActionSchema } from '@pga/contracts';
import { withTransaction } from '@pga/db';
import { adminProcedure } from '../../trpc/init';
import { lockCollector } from '../../collectors/lock-collector';
import { CommandSchema } from '../../collectors/collector-schema';
import { writeAudit } from '../../audit/write-audit';
import { actorOf } from '../../audit/actor';
import { COUNT_WAITING_COMMANDS, queueCommand } from '../../collectors/commands';

const INSERT_COMMAND = `
INSERT INTO collector_commands (collector_id, action, requested_by, expires_at)
VALUES ($1, $2, $3, now() + make_interval(secs => $4))
RETURNING id, requested_at, expires_at`;

/**
 * Queues stop / restart / resume for the collector's next heartbeat (CONTRACT.md): the row in
 * collector_commands is the record, the Redis list `commands(id)` the mailbox the edge drains.
 * A command not delivered within COMMAND_TTL_SECONDS expires (the edge skips its entry, the list
 * expires with its newest command); more than COMMAND_MAX_PENDING waiting is refused.
 */
export const sendCommand = adminProcedure
  .input(z.object({ id: z.uuid(), action: CollectorCommandActionSchema }))
  .output(CommandSchema)
  .mutation(async ({ ctx, input }) => {
    const { deps } = ctx;
    const { COMMAND_TTL_SECONDS, COMMAND_MAX_PENDING } = deps.config;
    const command = await withTransaction(deps.pool, async (db) => {
      await lockCollector(db, input.id);
      const pending = (await db.query<{ n: number }>(COUNT_WAITING_COMMANDS, [input.id])).rows[0]!.n;
      if (pending >= COMMAND_MAX_PENDING)
        throw new AppError(
          'CONFLICT',
          `${pending} commands are already waiting for this collector's next heartbeat; wait for it to pick them up`,
        );
      const { rows } = await db.query<{ id: string; requested_at: Date; expires_at: Date }>(INSERT_COMMAND, [
        input.id,
        input.action,
        ctx.user.id,
        COMMAND_TTL_SECONDS,
      ]);
      const cmd = rows[0]!;
      await writeAudit(db, actorOf(ctx), {
        action: 'collector.command',
        entityType: 'collector',
        collectorId: input.id,
        details: { command_id: cmd.id, action: input.action },
      });
      // Inside the transaction: if Redis refuses, the command is not recorded either, and the
      // admin gets an error to retry instead of a command that would never be delivered.
      const expiresAt = cmd.expires_at.getTime();
      const entry = JSON.stringify({ id: cmd.id, action: input.action, expires_at: expiresAt });
      await queueCommand(deps, input.id, entry, expiresAt).catch((err: unknown) => {
        deps.logger.warn({ err, collectorId: input.id }, 'could not queue a collector command');
        throw new AppError(
          'UNAVAILABLE',
          'the command could not be queued (Redis is unreachable or refused it); try again shortly',
        );
      });
      return cmd;
    });
    return {
      id: command.id,
      action: input.action,
      state: 'pending' as const,
      requested_at: command.requested_at.toISOString(),
      expires_at: command.expires_at.toISOString(),
      delivered_at: null,
      dropped_at: null,
      drop_reason: null,
      requested_by: ctx.user.username,
    };
  });
