import { router } from '../trpc/init';
import { authRouter } from './auth';
import { usersRouter } from './users';
import { collectorsRouter } from './collectors';

/** The whole API: routers are nouns, procedures verbs (STYLE.md). */
export const appRouter = router({
  auth: authRouter,
  users: usersRouter,
  collectors: collectorsRouter,
});

export type AppRouter = typeof appRouter;
