import { z } from 'zod';
import { adminProcedure } from '../../trpc/init';
import { USER_COLUMNS, UserSchema, toUser } from './user-schema';

export const list = adminProcedure
  .input(z.void())
  .output(z.object({ items: z.array(UserSchema) }))
  .query(async ({ ctx }) => {
    const { rows } = await ctx.deps.pool.query(`SELECT ${USER_COLUMNS} FROM users ORDER BY lower(username)`);
    return { items: rows.map(toUser) };
  });
