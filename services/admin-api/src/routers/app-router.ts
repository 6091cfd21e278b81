import { router } from '../trpc/init';
import { authRouter } from './auth';
import { usersRouter } from './users';
import { collectorsRouter } from './collectors';
import { groupsRouter } from './groups';
import { enrollmentRouter } from './enrollment';
import { dashboardsRouter } from './dashboards';
import { auditRouter } from './audit';
import { liveRouter } from './live';
import { deadLettersRouter } from './dead-letters';

/** The whole API: routers are nouns, procedures verbs (STYLE.md). */
export const appRouter = router({
  auth: authRouter,
  users: usersRouter,
  collectors: collectorsRouter,
  groups: groupsRouter,
  enrollment: enrollmentRouter,
  dashboards: dashboardsRouter,
  audit: auditRouter,
  live: liveRouter,
  deadLetters: deadLettersRouter,
});

export type AppRouter = typeof appRouter;
