import { z } from 'zod';
import { EnvironmentSchema } from '@pga/contracts';
import { randomSecret, sha256Hex } from '@pga/crypto';
import { withTransaction } from '@pga/db';
import { adminProcedure } from '../../trpc/init';
import { DateTimeSchema } from '../date-time-schema';
import { resolveGroupId } from '../../collectors/resolve-group';
import { writeAudit } from '../../audit/write-audit';
import { actorOf } from '../../audit/actor';
import { ENROLLMENT_SELECT, EnrollmentSecretSchema, toEnrollmentSecret } from './enrollment-schema';

export const CreateEnrollmentSecretInputSchema = z.object({
  name: z.string().trim().min(1, 'is required').max(255),
  group_id: z.uuid().optional(),
  /** The target group by name, as `collectors.register` takes it (with `group_id` too, they must agree). */
  group: z.string().trim().min(1, 'is required').max(255).optional(),
  environment: EnvironmentSchema.default('production'),
  /** When it stops working (must be in the future); none = never. */
  expires_at: DateTimeSchema.refine((v) => Date.parse(v) > Date.now(), 'must be in the future').optional(),
  /** How many collectors may enroll with it; none = unlimited. */
  max_uses: z.number().int().min(1, 'must be at least 1').max(1_000_000).optional(),
});

/**
 * Creates an enrollment secret (CONTRACT.md "enrollment"). The secret is returned once; only its
 * SHA-256 is stored — the edge hashes the `X-Registration-Secret` header the same way to find it.
 */
export const create = adminProcedure
  .input(CreateEnrollmentSecretInputSchema)
  .output(z.object({ secret: z.string(), item: EnrollmentSecretSchema }))
  .mutation(async ({ ctx, input }) => {
    const secret = `pga_enroll_${randomSecret(32)}`;
    const item = await withTransaction(ctx.deps.pool, async (db) => {
      const groupId = await resolveGroupId(db, { group: input.group, group_id: input.group_id });
      const { rows } = await db.query(
        `INSERT INTO enrollment_secrets (name, secret_hash, group_id, environment, expires_at, max_uses, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id`,
        [
          input.name,
          sha256Hex(secret),
          groupId,
          input.environment,
          input.expires_at ?? null,
          input.max_uses ?? null,
          ctx.user.id,
        ],
      );
      const id = rows[0].id as string;
      await writeAudit(db, actorOf(ctx), {
        action: 'enrollment.created',
        entityType: 'enrollment_secret',
        entityId: id,
        newValues: {
          name: input.name,
          group_id: groupId,
          environment: input.environment,
          expires_at: input.expires_at ?? null,
          max_uses: input.max_uses ?? null,
        },
      });
      return toEnrollmentSecret((await db.query(`${ENROLLMENT_SELECT} WHERE s.id = $1`, [id])).rows[0]);
    });
    return { secret, item };
  });
