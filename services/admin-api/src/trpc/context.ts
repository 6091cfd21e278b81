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
  /** Closes the HTTP connection in `ms` unless its answer has ended by then (absent outside HTTP). */
  closeConnectionAfter?(ms: number): void;
}
