import { z } from 'zod';
import { authedProcedure } from '../../trpc/init';
import { ENROLLMENT_SELECT, EnrollmentSecretSchema, toEnrollmentSecret } from './enrollment-schema';

export const list = authedProcedure
  .input(z.object({ include_inactive: z.boolean().default(true) }).default({ include_inactive: true }))
  .output(z.object({ items: z.array(EnrollmentSecretSchema) }))
  .query(async ({ ctx, input }) => {
    const { rows } = await ctx.deps.pool.query(`${ENROLLMENT_SELECT} ORDER BY s.created_at DESC`);
    const items = rows.map(toEnrollmentSecret);
    return { items: input.include_inactive ? items : items.filter((s) => s.state === 'active') };
  });
