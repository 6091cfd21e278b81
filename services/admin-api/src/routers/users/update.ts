import { z } from 'zod';
import { AppError, UserRoleSchema } from '@pga/contracts';
import { hashSecret } from '@pga/crypto';
import { isUniqueViolation, withTransaction } from '@pga/db';
import { adminProcedure } from '../../trpc/init';
import { MASKED, diffValues, writeAudit } from '../../audit/write-audit';
import { actorOf } from '../../audit/actor';
import { deleteUserSessions } from '../../auth/sessions';
import { endLiveFeeds } from '../../live/end-live-feeds';
import { NewPasswordSchema, USER_COLUMNS, UserSchema, toUser } from './user-schema';

export const UpdateUserInputSchema = z.object({
  id: z.uuid(),
  role: UserRoleSchema.optional(),
  disabled: z.boolean().optional(),
  display_name: z.string().trim().max(255).nullable().optional(),
  email: z.email('expected an e-mail address').max(255).nullable().optional(),
  password: NewPasswordSchema.optional(),
});

/**
 * Re-roles, disables / enables, renames or resets the password of a user. Disabling, re-roling or
 * a password reset ends the user's sessions. The last enabled admin cannot be demoted or disabled
 * (the installation would have nobody left to manage it).
 */
export const update = adminProcedure
  .input(UpdateUserInputSchema)
  .output(UserSchema)
  .mutation(async ({ ctx, input }) => {
    const passwordHash = input.password ? await hashSecret(input.password) : undefined;
    let sessionsEnded = false;
    try {
      const updated = await withTransaction(ctx.deps.pool, async (db) => {
        // Serialises concurrent admin changes, so two admins cannot demote each other at once.
        await db.query("SELECT id FROM users WHERE role = 'admin' FOR UPDATE");
        const { rows: before } = await db.query(`SELECT ${USER_COLUMNS} FROM users WHERE id = $1 FOR UPDATE`, [input.id]);
        if (!before[0]) throw new AppError('NOT_FOUND', 'no such user');
        const old = toUser(before[0]);
        const next = {
          role: input.role ?? old.role,
          disabled: input.disabled ?? old.disabled,
          display_name: input.display_name === undefined ? old.display_name : input.display_name,
          email: input.email === undefined ? old.email : input.email,
        };
        if (old.role === 'admin' && !old.disabled && (next.role !== 'admin' || next.disabled)) {
          const { rows } = await db.query(
            "SELECT count(*)::int AS n FROM users WHERE role = 'admin' AND NOT disabled AND id <> $1",
            [old.id],
          );
          if (rows[0].n === 0) throw new AppError('CONFLICT', 'this is the last enabled admin; make another user admin first');
        }
        const { rows } = await db.query(
          `UPDATE users SET role = $2, disabled = $3, display_name = $4, email = $5,
                  password_hash = coalesce($6, password_hash), updated_at = now()
            WHERE id = $1 RETURNING ${USER_COLUMNS}`,
          [old.id, next.role, next.disabled, next.display_name, next.email, passwordHash ?? null],
        );
        const user = toUser(rows[0]);
        sessionsEnded = next.disabled || next.role !== old.role || passwordHash !== undefined;
        if (sessionsEnded) await deleteUserSessions(db, user.id);
        const diff = diffValues(old, next) ?? { oldValues: {}, newValues: {} };
        if (passwordHash) {
          diff.oldValues.password = MASKED;
          diff.newValues.password = MASKED;
        }
        await writeAudit(db, actorOf(ctx), { action: 'user.updated', entityType: 'user', entityId: user.id, ...diff });
        return user;
      });
      // Committed: the user's open live feeds end too, in every admin process.
      if (sessionsEnded) await endLiveFeeds(ctx.deps, { userId: updated.id });
      return updated;
    } catch (err) {
      if (isUniqueViolation(err, 'users_email_key'))
        throw new AppError('CONFLICT', 'another user has this e-mail address', { field: 'email' });
      throw err;
    }
  });
