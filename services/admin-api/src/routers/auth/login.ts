import { z } from 'zod';
import { AppError } from '@pga/contracts';
import { hashSecret, verifySecret } from '@pga/crypto';
import { withTransaction } from '@pga/db';
import { publicProcedure } from '../../trpc/init';
import { beginLoginAttempt, firstRefusalInWindow, recordLoginSuccess, refuseLoginAttempt } from '../../auth/login-limit';
import { createSession } from '../../auth/sessions';
import { sessionCookie } from '../../auth/session-cookie';
import { writeAudit } from '../../audit/write-audit';
import { unknownUserName } from '../../audit/actor';
import { SessionUserSchema } from '../users/user-schema';

export const LoginInputSchema = z.object({
  username: z.string().trim().min(1, 'is required').max(255),
  password: z.string().min(1, 'is required').max(1024),
});

// Verifying against a throw-away hash when the user does not exist keeps the answer time the
// same, so response timing does not reveal which usernames exist.
let dummyHash: Promise<string> | undefined;

export const login = publicProcedure
  .input(LoginInputSchema)
  .output(z.object({ user: SessionUserSchema }))
  .mutation(async ({ ctx, input }) => {
    const { pool, config } = ctx.deps;
    const username = input.username.toLowerCase();
    const attempt = await beginLoginAttempt(pool, username, ctx.ip, {
      maxPerUser: config.LOGIN_MAX_FAILURES_PER_USER,
      maxPerIp: config.LOGIN_MAX_FAILURES_PER_IP,
      windowMinutes: config.LOGIN_WINDOW_MINUTES,
    });
    const { rows } = await pool.query<{
      id: string;
      username: string;
      display_name: string | null;
      role: 'admin' | 'viewer';
      password_hash: string;
      disabled: boolean;
    }>('SELECT id, username, display_name, role, password_hash, disabled FROM users WHERE lower(username) = $1', [username]);
    const found = rows[0];
    // An account's name as stored, or a keyed hash of text that names no account (L2: it may be a
    // password typed into the wrong field, and viewers read the audit log).
    const actorName = found ? found.username : unknownUserName(await ctx.deps.auditMarkerKey(), username);
    const failedAudit = (reason: string) =>
      withTransaction(pool, async (db) => {
        if (attempt.limited) {
          // Refused: counted in login_attempts; audited once per username / IP per window (L3).
          await refuseLoginAttempt(db, attempt.id);
          const first = await firstRefusalInWindow(
            db,
            { limited: attempt.limited, actorName, ip: ctx.ip },
            config.LOGIN_WINDOW_MINUTES,
          );
          if (!first) return;
        }
        await writeAudit(
          db,
          { id: found?.id ?? null, name: actorName, ip: ctx.ip, userAgent: ctx.userAgent },
          {
            action: 'user.login_failed',
            entityType: 'user',
            entityId: found?.id ?? null,
            details: attempt.limited ? { reason, limited_by: attempt.limited } : { reason },
          },
        );
      });
    if (attempt.limited) {
      await failedAudit('rate_limited');
      throw new AppError('RATE_LIMITED', `too many failed sign-ins; try again in ${config.LOGIN_WINDOW_MINUTES} minutes`, {
        retryAfterSeconds: config.LOGIN_WINDOW_MINUTES * 60,
      });
    }
    const ok = await verifySecret(input.password, found?.password_hash ?? (await (dummyHash ??= hashSecret('not a password'))));
    if (!found || !ok || found.disabled) {
      await failedAudit(!found ? 'unknown_user' : found.disabled ? 'disabled' : 'wrong_password');
      throw new AppError('UNAUTHORIZED', 'wrong username or password');
    }
    const user = { id: found.id, username: found.username, display_name: found.display_name, role: found.role };
    const session = await withTransaction(pool, async (db) => {
      await recordLoginSuccess(db, username, ctx.ip);
      await db.query('UPDATE users SET last_login_at = now() WHERE id = $1', [user.id]);
      await writeAudit(
        db,
        { id: user.id, name: user.username, ip: ctx.ip, userAgent: ctx.userAgent },
        {
          action: 'user.login',
          entityType: 'user',
          entityId: user.id,
        },
      );
      return createSession(db, user.id, { ttlHours: config.SESSION_TTL_HOURS, ip: ctx.ip, userAgent: ctx.userAgent });
    });
    ctx.deps.sessionLookup.forget(session.hash);
    // Signed (auth/session-signer.ts): a cookie this installation did not sign costs no lookup.
    ctx.setCookie(
      sessionCookie(ctx.deps.sessionLookup.cookieValue(session.id), {
        maxAgeSeconds: config.SESSION_TTL_HOURS * 3600,
        secure: ctx.secureCookies,
      }),
    );
    return { user };
  });
