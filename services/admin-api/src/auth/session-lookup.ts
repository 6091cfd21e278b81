import { sha256Hex } from '@pga/crypto';
import { AppError } from '@pga/contracts';
import type { Pool } from '@pga/db';
import type { SessionUser } from '../trpc/context';
import type { SessionSigner } from './session-signer';

export interface FoundSession {
  user: SessionUser;
  hash: string;
  expiresAt: Date;
}

export interface SessionLookup {
  /**
   * The valid session of a session cookie's value, or undefined: a value this installation did not
   * sign (auth/session-signer.ts) is undefined at once, without a query. Throws UNAVAILABLE (503, Retry-After 1) when
   * SESSION_LOOKUP_CONCURRENCY lookups already run and no slot frees up within SESSION_LOOKUP_WAIT_MS.
   * `signal` (the request's client gone): a lookup still waiting for a slot leaves the queue at once
   * and rejects with its reason; one running is not stopped.
   */
  lookup(cookieValue: string, signal?: AbortSignal): Promise<FoundSession | undefined>;
  /**
   * The SHA-256 of the session id a cookie value carries when this installation signed it (what
   * `admin_sessions.id_hash` holds), without a query; undefined for any other value. What the
   * per-session in-flight cap (http/in-flight.ts) counts by, before the session is looked up.
   */
  sessionHash(cookieValue: string): string | undefined;
  /** The cookie value of a new session's id (signed). */
  cookieValue(sessionId: string): string;
  /** Drops a hash from the cache of unknown ids (a session just created with it). */
  forget(hash: string): void;
  /** Lookups running and waiting, ids remembered as unknown (tests, diagnostics). */
  stats(): { active: number; waiting: number; unknown: number };
}

/** How long an id PostgreSQL does not know is answered "no session" without asking again. */
export const UNKNOWN_SESSION_TTL_MS = 5000;
/** Unknown ids remembered at most (the oldest go first): about 1 MB. */
export const UNKNOWN_SESSION_MAX = 10_000;

/**
 * Session lookups of incoming requests (http/create-http-context.ts). Every request with a
 * well-formed session cookie cost a query on the 10-connection pool, waiting up to 10 s for a
 * connection: 2,000 concurrent anonymous requests with made-up cookies held an admin's
 * collectors.list for 10-17 s. Now:
 *
 * - at most `maxConcurrent` lookups use the pool at once (the rest of it stays for the procedures);
 *   a lookup waits at most `waitMs` for a slot, and at most `maxConcurrent * 50` wait: beyond, 503;
 * - an id PostgreSQL does not know is remembered for UNKNOWN_SESSION_TTL_MS (at most
 *   UNKNOWN_SESSION_MAX ids), so repeating one costs no query. A real session cannot be refused by
 *   it: its id is 256 random bits made by the login that creates it, in this process or another,
 *   and first sent to the client in that login's answer, after its row is committed — so no request
 *   can carry it before PostgreSQL knows it, and no process can have it remembered as unknown. Only
 *   ids without any row are remembered: a row that exists but is expired or of a disabled user is
 *   asked again (a user enabled again by hand gets their session back at once, as before).
 *
 * And before all that, since 2026-12-07: only a cookie signed by this installation (`signer`) is
 * looked up at all, so made-up cookies cost one HMAC and no query, however many; the bounds above
 * now only meet cookies once issued (a session logged out or expired).
 */
export function createSessionLookup(
  pool: Pool,
  signer: SessionSigner,
  { maxConcurrent, waitMs }: { maxConcurrent: number; waitMs: number },
): SessionLookup {
  const maxWaiting = maxConcurrent * 50;
  const unknown = new Map<string, number>();
  let active = 0;
  const waiting: { grant: () => void }[] = [];
  const busy = () =>
    new AppError(
      'UNAVAILABLE',
      'too many requests are checking their session at once; try again shortly (SESSION_LOOKUP_CONCURRENCY, SESSION_LOOKUP_WAIT_MS)',
      { retryAfterSeconds: 1 },
    );
  const acquire = async (signal: AbortSignal | undefined) => {
    signal?.throwIfAborted();
    if (active < maxConcurrent) {
      active++;
      return;
    }
    if (waiting.length >= maxWaiting) throw busy();
    await new Promise<void>((resolve, reject) => {
      const leave = (reason: unknown) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        waiting.splice(waiting.indexOf(entry), 1);
        reject(reason);
      };
      const onAbort = () => leave(signal!.reason);
      const entry = {
        grant: () => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      const timer = setTimeout(() => leave(busy()), waitMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      waiting.push(entry);
    });
  };
  const release = () => {
    const next = waiting.shift();
    if (next) next.grant();
    else active--;
  };
  const rememberUnknown = (hash: string) => {
    unknown.delete(hash);
    unknown.set(hash, Date.now() + UNKNOWN_SESSION_TTL_MS);
    if (unknown.size > UNKNOWN_SESSION_MAX) unknown.delete(unknown.keys().next().value!);
  };
  const isUnknown = (hash: string) => {
    const until = unknown.get(hash);
    if (until === undefined) return false;
    if (until > Date.now()) return true;
    unknown.delete(hash);
    return false;
  };
  return {
    async lookup(cookieValue, signal) {
      const sessionId = signer.open(cookieValue);
      if (sessionId === undefined) return undefined;
      const hash = sha256Hex(sessionId);
      if (isUnknown(hash)) return undefined;
      await acquire(signal);
      try {
        const { rows } = await pool.query<SessionUser & { expires_at: Date; valid: boolean }>(
          `SELECT u.id, u.username, u.display_name, u.role, s.expires_at,
                  (s.expires_at > now() AND NOT u.disabled) AS valid
             FROM admin_sessions s JOIN users u ON u.id = s.user_id
            WHERE s.id_hash = $1`,
          [hash],
        );
        const row = rows[0];
        if (!row) {
          rememberUnknown(hash);
          return undefined;
        }
        if (!row.valid) return undefined;
        const { expires_at: expiresAt, valid: _valid, ...user } = row;
        return { user, hash, expiresAt };
      } finally {
        release();
      }
    },
    sessionHash(cookieValue) {
      const sessionId = signer.open(cookieValue);
      return sessionId === undefined ? undefined : sha256Hex(sessionId);
    },
    cookieValue(sessionId) {
      return signer.sign(sessionId);
    },
    forget(hash) {
      unknown.delete(hash);
    },
    stats() {
      return { active, waiting: waiting.length, unknown: unknown.size };
    },
  };
}
