import type { UserRole } from '@pga/contracts';
import type { Deps } from '../deps';

export interface SessionUser {
  id: string;
  username: string;
  display_name: string | null;
  role: UserRole;
}

/** Per-request context. Over HTTP it comes from `createHttpContext`; tests build it directly. */
export interface Context {
  deps: Deps;
  /** The signed-in user, or null (anonymous). */
  user: SessionUser | null;
  /** SHA-256 of the session id, when signed in through a session. */
  sessionHash: string | null;
  /** When that session expires (live feeds end then). */
  sessionExpiresAt?: Date | null;
  ip: string | null;
  userAgent: string | null;
  /** Whether the session cookie must carry `Secure`. */
  secureCookies: boolean;
  /** Adds a Set-Cookie header to the answer (a no-op outside HTTP). */
  setCookie(cookie: string): void;
  /**
   * Runs a procedure holding its HTTP request's place in ADMIN_SESSION_MAX_IN_FLIGHT until it
   * settles; refuses to start it when the client is gone already (http/request-hold.ts). Absent
   * outside HTTP.
   */
  inProgress?<T>(run: () => Promise<T>): Promise<T>;
  /** Closes the HTTP connection in `ms` unless its answer has ended by then (absent outside HTTP). */
  closeConnectionAfter?(ms: number): void;
}
