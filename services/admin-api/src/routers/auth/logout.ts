import { z } from 'zod';
import { withTransaction } from '@pga/db';
import { publicProcedure } from '../../trpc/init';
import { deleteSession } from '../../auth/sessions';
import { sessionCookie } from '../../auth/session-cookie';
import { writeAudit } from '../../audit/write-audit';
import { actorOf } from '../../audit/actor';
import { endLiveFeeds } from '../../live/end-live-feeds';

/** Ends the current session (idempotent: signing out twice is fine). */
export const logout = publicProcedure
  .input(z.void())
  .output(z.object({ ok: z.literal(true) }))
  .mutation(async ({ ctx }) => {
    const { sessionHash, user } = ctx;
    if (sessionHash)
      await withTransaction(ctx.deps.pool, async (db) => {
        await deleteSession(db, sessionHash);
        if (user) await writeAudit(db, actorOf(ctx), { action: 'user.logout', entityType: 'user', entityId: user.id });
      });
    // Its open live feeds too, in every admin process (a stolen cookie's stream outlived the logout).
    if (sessionHash) await endLiveFeeds(ctx.deps, { sessionHash });
    ctx.setCookie(sessionCookie('', { maxAgeSeconds: 0, secure: ctx.secureCookies }));
    return { ok: true as const };
  });
