import { z } from 'zod';
import { publicProcedure } from '../../trpc/init';
import { deleteSession } from '../../auth/sessions';
import { sessionCookie } from '../../auth/session-cookie';
import { writeAudit } from '../../audit/write-audit';
import { actorOf } from '../../audit/actor';

/** Ends the current session (idempotent: signing out twice is fine). */
export const logout = publicProcedure
  .input(z.void())
  .output(z.object({ ok: z.literal(true) }))
  .mutation(async ({ ctx }) => {
    if (ctx.sessionHash) {
      await deleteSession(ctx.deps.pool, ctx.sessionHash);
      if (ctx.user)
        await writeAudit(ctx.deps.pool, actorOf(ctx), { action: 'user.logout', entityType: 'user', entityId: ctx.user.id });
    }
    ctx.setCookie(sessionCookie('', { maxAgeSeconds: 0, secure: ctx.secureCookies }));
    return { ok: true as const };
  });
