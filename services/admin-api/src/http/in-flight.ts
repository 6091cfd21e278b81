import type { IncomingMessage, ServerResponse } from 'node:http';
import { AppError } from '@pga/contracts';
import type { Deps } from '../deps';
import { SESSION_COOKIE, readCookie } from '../auth/session-cookie';
import { trpcCalls } from './request-body';
import { holdRequest } from './request-hold';

/** Seconds a request refused for its session's in-flight cap is told to wait (Retry-After). */
const IN_FLIGHT_RETRY_SECONDS = 1;

/**
 * The one procedure a request may hold open for long (a live feed): counted only until its session
 * lookup has settled, then capped by LIVE_FEED_MAX_PER_SESSION instead.
 */
const LIVE_FEED = 'live.collectorStatus';

/**
 * /trpc requests in progress per session (ADMIN_SESSION_MAX_IN_FLIGHT), counted from their arrival
 * to their answer (or their connection's end) and until the session lookup and procedures they
 * started have settled (http/request-hold.ts), from before their session is looked up: the session is
 * the one a cookie this installation signed names (SessionLookup.sessionHash, one HMAC), so a
 * made-up cookie is counted nowhere (it is no session anyway) and a real one cannot be multiplied.
 * Until 2026-12-08 one session's 200 concurrent requests (a script, a stolen cookie) took the
 * session lookups' slots and queue and the process's event loop: another admin's collectors.list
 * went from 13 ms to 650-790 ms (p50), 1.3-1.5 s (p99), and about one in ten of them was answered
 * 503 (the lookups' queue full).
 */
export class SessionInFlight {
  private readonly bySession = new Map<string, number>();
  constructor(readonly max: number) {}
  /** Requests of a session in progress (tests, diagnostics). */
  of(sessionHash: string): number {
    return this.bySession.get(sessionHash) ?? 0;
  }
  /** A release function, or undefined when the session has `max` requests in progress already. */
  tryEnter(sessionHash: string): (() => void) | undefined {
    const now = this.of(sessionHash);
    if (now >= this.max) return undefined;
    this.bySession.set(sessionHash, now + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = this.of(sessionHash) - 1;
      if (left > 0) this.bySession.set(sessionHash, left);
      else this.bySession.delete(sessionHash);
    };
  }
}

/**
 * Counts a /trpc request against its session's cap; false when it was answered here: 429
 * RATE_LIMITED with Retry-After, before its session is looked up or its body read (or when its
 * connection is gone already). A request without a signed session cookie is not counted; a live feed
 * (open for as long as it is watched) only until its session lookup has settled.
 */
export function admitInFlight(
  deps: Deps,
  req: IncomingMessage,
  res: ServerResponse,
  pathname: string,
  inFlight: SessionInFlight,
  refuse: (error: AppError) => void,
): boolean {
  const cookie = readCookie(req.headers.cookie, SESSION_COOKIE);
  const sessionHash = cookie ? deps.sessionLookup.sessionHash(cookie) : undefined;
  if (!sessionHash) return true;
  const release = inFlight.tryEnter(sessionHash);
  if (!release) {
    const message =
      `this session has ${inFlight.max} requests in progress already (ADMIN_SESSION_MAX_IN_FLIGHT); ` +
      'send this one when one of them has been answered';
    refuse(new AppError('RATE_LIMITED', message, { retryAfterSeconds: IN_FLIGHT_RETRY_SECONDS }));
    return false;
  }
  // A live feed until its session is known (until 2026-12-08 not counted at all, yet each one, the
  // 6th and the 600th alike, was looked up before LIVE_FEED_MAX_PER_SESSION refused it: one session's
  // feed requests filled the lookups' queue, review34 F1).
  return holdRequest(req, res, release, { untilLookedUp: trpcCalls(pathname).every((c) => c === LIVE_FEED) });
}
