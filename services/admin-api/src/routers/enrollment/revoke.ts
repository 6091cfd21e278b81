import { z } from 'zod';
import { AppError } from '@pga/contracts';
import { withTransaction } from '@pga/db';
import { adminProcedure } from '../../trpc/init';
import { writeAudit } from '../../audit/write-audit';
import { actorOf } from '../../audit/actor';
import { ENROLLMENT_SELECT, EnrollmentSecretSchema, toEnrollmentSecret } from './enrollment-schema';

/** Stops a secret from enrolling more collectors (already enrolled ones keep their tokens). */
export const revoke = adminProcedure
  .input(z.object({ id: z.uuid() }))
  .output(EnrollmentSecretSchema)
  .mutation(async ({ ctx, input }) =>
    withTransaction(ctx.deps.pool, async (db) => {
      const { rows } = await db.query(
        'UPDATE enrollment_secrets SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 RETURNING name',
        [input.id],
      );
      if (!rows[0]) throw new AppError('NOT_FOUND', 'no such enrollment secret');
      await writeAudit(db, actorOf(ctx), {
        action: 'enrollment.revoked',
        entityType: 'enrollment_secret',
        entityId: input.id,
        details: { name: rows[0].name },
      });
      return toEnrollmentSecret((await db.query(`${ENROLLMENT_SELECT} WHERE s.id = $1`, [input.id])).rows[0]);
    }),
  );
