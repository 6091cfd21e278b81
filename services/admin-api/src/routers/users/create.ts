import { z } from 'zod';
import { AppError, UserRoleSchema } from '@pga/contracts';
import { hashSecret } from '@pga/crypto';
import { isUniqueViolation, withTransaction } from '@pga/db';
import { adminProcedure } from '../../trpc/init';
import { writeAudit } from '../../audit/write-audit';
import { actorOf } from '../../audit/actor';
import { NewPasswordSchema, USER_COLUMNS, UserSchema, UsernameSchema, toUser } from './user-schema';

export const CreateUserInputSchema = z.object({
  username: UsernameSchema,
  password: NewPasswordSchema,
  role: UserRoleSchema,
  display_name: z.string().trim().max(255).optional(),
  email: z.email('expected an e-mail address').max(255).optional(),
});
export type CreateUserInput = z.infer<typeof CreateUserInputSchema>;

export const create = adminProcedure
  .input(CreateUserInputSchema)
  .output(UserSchema)
  .mutation(async ({ ctx, input }) => {
    const passwordHash = await hashSecret(input.password);
    try {
      return await withTransaction(ctx.deps.pool, async (db) => {
        const { rows } = await db.query(
          `INSERT INTO users (username, password_hash, role, display_name, email) VALUES ($1, $2, $3, $4, $5)
           RETURNING ${USER_COLUMNS}`,
          [input.username, passwordHash, input.role, input.display_name ?? null, input.email ?? null],
        );
        const user = toUser(rows[0]!);
        await writeAudit(db, actorOf(ctx), {
          action: 'user.created',
          entityType: 'user',
          entityId: user.id,
          newValues: { username: user.username, role: user.role, display_name: user.display_name, email: user.email },
        });
        return user;
      });
    } catch (err) {
      if (isUniqueViolation(err, 'users_username_key'))
        throw new AppError('CONFLICT', `a user named "${input.username}" already exists`, { field: 'username' });
      if (isUniqueViolation(err, 'users_email_key'))
        throw new AppError('CONFLICT', `a user with e-mail "${input.email}" already exists`, { field: 'email' });
      throw err;
    }
  });
