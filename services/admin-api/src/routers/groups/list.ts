import { z } from 'zod';
import { authedProcedure } from '../../trpc/init';
import { GROUP_SELECT, GroupSchema, toGroup } from './group-schema';

export const list = authedProcedure
  .input(z.void())
  .output(z.object({ items: z.array(GroupSchema) }))
  .query(async ({ ctx }) => {
    const { rows } = await ctx.deps.pool.query(`${GROUP_SELECT} ORDER BY g.display_order NULLS LAST, g.name`);
    return { items: rows.map(toGroup) };
  });
