import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Deps } from '../deps';
import type { Context } from '../trpc/context';
import { AppError } from '@pga/contracts';
import { toTRPCError } from '../trpc/init';
import { SESSION_COOKIE, readCookie } from '../auth/session-cookie';
import { clientIp, isTls, requestPathname } from './request-meta';
import { admittedSession } from './request-body';
import { whileInProgress } from './request-hold';
import { databaseUnavailable, logDatabaseUnavailable } from '../db/unavailable';

/**
 * Builds the tRPC context of one HTTP request: the session user (if any), IP, user agent.
 * `onUnreadableForwarded` hears of an X-Forwarded-For entry that is not an address (clientIp).
 */
export async function createHttpContext(
  deps: Deps,
  req: IncomingMessage,
  res: ServerResponse,
  onUnreadableForwarded?: (entry: string) => void,
): Promise<Context> {
  const { TRUST_PROXY: trustProxy, TRUST_PROXY_HOPS: hops } = deps.config;
  const sessionId = readCookie(req.headers.cookie, SESSION_COOKIE);
  // A body over 64 KiB had its session looked up before it was read (admitBody): that answer, unless
  // the body took longer than ADMITTED_SESSION_REUSE_MS to arrive.
  const admitted = admittedSession(req);
  let session;
  try {
    // Holding the request's place in ADMIN_SESSION_MAX_IN_FLIGHT until it settles; not started (nor
    // waiting on) for a client gone already (http/request-hold.ts).
    session = admitted
      ? admitted.session
      : sessionId
        ? await whileInProgress(req, (signal) => deps.sessionLookup.lookup(sessionId, signal), 'lookup')
        : undefined;
  } catch (err) {
    // Too many lookups at once: 503 with Retry-After (auth/session-lookup.ts), not a 500.
    if (err instanceof AppError) throw toTRPCError(err);
    // PostgreSQL unreachable, restarting, out of disk …: the same, for every signed-in request.
    const unavailable = databaseUnavailable(err);
    if (unavailable) {
      logDatabaseUnavailable(deps.logger, err, requestPathname(req));
      throw toTRPCError(unavailable);
    }
    throw err;
  }
  return {
    deps,
    user: session?.user ?? null,
    sessionHash: session?.hash ?? null,
    sessionExpiresAt: session?.expiresAt ?? null,
    ip: clientIp(req, trustProxy, hops, onUnreadableForwarded),
    userAgent: req.headers['user-agent'] ?? null,
    secureCookies: deps.config.COOKIE_SECURE || isTls(req, trustProxy, hops),
    setCookie(cookie) {
      const previous = res.getHeader('set-cookie');
      res.setHeader('set-cookie', [...(Array.isArray(previous) ? previous : previous ? [String(previous)] : []), cookie]);
    },
    inProgress: (run) => whileInProgress(req, run),
    closeConnectionAfter(ms) {
      if (res.writableFinished || res.destroyed) return;
      const timer = setTimeout(() => res.destroy(), ms).unref();
      res.once('close', () => clearTimeout(timer));
    },
  };
}
