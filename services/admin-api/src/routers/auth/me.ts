import { z } from 'zod';
import { publicProcedure } from '../../trpc/init';
import { SessionUserSchema } from '../users/user-schema';

/** The signed-in user, or null: the UI calls it first to decide between the login page and the app. */
export const me = publicProcedure
  .input(z.void())
  .output(z.object({ user: SessionUserSchema.nullable() }))
  .query(({ ctx }) => ({ user: ctx.user }));
