import { AppError } from '@pga/contracts';
import { isDatabaseUnavailable, pgErrorCode, unavailableReason } from '@pga/db';
import type { Logger } from '@pga/logger';

/** Seconds a client is told to wait (Retry-After) when PostgreSQL cannot take its request now. */
export const DATABASE_RETRY_AFTER_SECONDS = 5;

/** What an answer says of a PostgreSQL that cannot serve a request now, by SQLSTATE (@pga/db). */
const reasonOf = unavailableReason;

/**
 * A request that failed because PostgreSQL cannot serve it now (`isDatabaseUnavailable`: unreachable,
 * shutting down or restarting, disk full, too many connections, read-only …) as an UNAVAILABLE
 * AppError (503 with Retry-After), or undefined for any other error. Until 2026-12-07 every such
 * request was answered 500 INTERNAL ("internal error") with a stack in the log, the session lookup
 * of every signed-in request included: a full disk or a restart looked like a bug to the UI and to
 * any client, which had no Retry-After to go by.
 */
export function databaseUnavailable(err: unknown): AppError | undefined {
  if (err instanceof AppError || !isDatabaseUnavailable(err)) return undefined;
  return new AppError('UNAVAILABLE', `${reasonOf(err)}; try again shortly`, { retryAfterSeconds: DATABASE_RETRY_AFTER_SECONDS });
}

/** Each logger's last warning time per reason (ms): one line per reason and minute, not one per request. */
const warned = new WeakMap<Logger, Map<string, number>>();

/**
 * Logs a request answered 503 for PostgreSQL: one warning per reason (SQLSTATE, or the driver's text
 * for an error without one) and minute, with the driver's message and how many were answered so
 * meanwhile — every request of a signed-in UI while PostgreSQL's disk is full must not each be a
 * line with a stack.
 */
export function logDatabaseUnavailable(logger: Logger, err: unknown, path: string | undefined, everyMs = 60_000): void {
  const code = pgErrorCode(err);
  const text = err instanceof Error ? err.message : String(err);
  const key = code ?? text;
  let byReason = warned.get(logger);
  if (!byReason) warned.set(logger, (byReason = new Map()));
  const now = Date.now();
  const last = byReason.get(key);
  if (last !== undefined && now - last < everyMs) return;
  byReason.set(key, now);
  logger.warn(
    { err: text, sqlstate: code, path },
    `${reasonOf(err)}: answering 503 UNAVAILABLE with Retry-After ${DATABASE_RETRY_AFTER_SECONDS} (at most one line a minute per reason)`,
  );
}
