import { AppError } from '@pga/contracts';
import { isDiskFull, isLostConnection, pgErrorCode, unavailableReason } from '@pga/db';
import { createReasonThrottle, type Logger, type ReasonThrottle } from '@pga/logger';

/** Seconds a client is told to wait (Retry-After) when PostgreSQL cannot take its request now. */
export const DATABASE_RETRY_AFTER_SECONDS = 5;

/**
 * PostgreSQL cannot serve a request now, whatever the request: the connection failed or went away
 * (`isLostConnection`: a socket/DNS error, node-postgres's connection errors without a SQLSTATE;
 * 08* connection exceptions), the server is shutting down, crashed or starting (57P01-57P03) or closed
 * the pooled session for idling (57P05, idle_session_timeout), its disk is full (53100, or PostgreSQL
 * 15/16's XX000 "could not write init file" at connection start: `isDiskFull`), it has no free
 * connection (53300), or it is read-only (25006: the old primary or a replica during a failover). Narrower than the writer's retry classification
 * (`isTransientPgError`): a statement timeout (57014), a serialisation failure or deadlock
 * (40001/40P01), a lock timeout (55P03) and the other insufficient-resources errors (53200 out of
 * shared memory, 53400 a configured limit) can fail the same way every time — a slow query, a
 * lock-order bug, a limit — and stay a 500 with a stack in the log, never a "try again shortly".
 */
export function isPostgresUnavailable(err: unknown): boolean {
  if (isLostConnection(err) || isDiskFull(err)) return true;
  const code = pgErrorCode(err);
  if (code === undefined) return false;
  return code.startsWith('08') || ['57P01', '57P02', '57P03', '57P05', '53300', '25006'].includes(code);
}

/** What an answer says of it, by SQLSTATE (@pga/db; never the driver's message). */
const reasonOf = unavailableReason;

/**
 * A request that failed because PostgreSQL cannot serve it now (`isPostgresUnavailable`: unreachable,
 * shutting down or restarting, disk full, too many connections, read-only) as an UNAVAILABLE
 * AppError (503 with Retry-After), or undefined for any other error. Until 2026-12-07 every such
 * request was answered 500 INTERNAL ("internal error") with a stack in the log, the session lookup
 * of every signed-in request included: a full disk or a restart looked like a bug to the UI and to
 * any client, which had no Retry-After to go by. `mutation`: the request may have changed data, and
 * the connection may have been lost after its COMMIT (or a later step failed): the answer says the
 * change may have been saved, so that nobody retries blindly.
 */
export function databaseUnavailable(err: unknown, { mutation = false }: { mutation?: boolean } = {}): AppError | undefined {
  if (err instanceof AppError || !isPostgresUnavailable(err)) return undefined;
  const advice = mutation ? 'the change may have been saved: check before retrying' : 'try again shortly';
  return new AppError('UNAVAILABLE', `${reasonOf(err)}; ${advice}`, { retryAfterSeconds: DATABASE_RETRY_AFTER_SECONDS });
}

/** Per logger: when to write a line per reason (@pga/logger's `createReasonThrottle`; never ended). */
const warned = new WeakMap<Logger, ReasonThrottle<undefined>>();

/**
 * Logs a request answered 503 for PostgreSQL: one warning per reason (SQLSTATE, or the driver's text
 * for an error without one) and minute, with the driver's message and how many were answered so
 * meanwhile (`suppressed`: since the previous line of that reason) — every request of a signed-in UI
 * while PostgreSQL's disk is full must not each be a line with a stack. No "recovered" line: a
 * request that succeeds says nothing of the reason another one failed for, so a reason is never
 * ended, and its next line, however much later, counts what went unlogged since its last.
 */
export function logDatabaseUnavailable(logger: Logger, err: unknown, path: string | undefined, everyMs = 60_000): void {
  const code = pgErrorCode(err);
  const text = err instanceof Error ? err.message : String(err);
  let throttle = warned.get(logger);
  if (!throttle) warned.set(logger, (throttle = createReasonThrottle()));
  const line = throttle.note(code ?? text, () => undefined, everyMs);
  if (!line) return;
  logger.warn(
    { err: text, sqlstate: code, path, suppressed: line.first ? 0 : line.suppressed },
    `${reasonOf(err)}: answering 503 UNAVAILABLE with Retry-After ${DATABASE_RETRY_AFTER_SECONDS} (at most one line a minute per reason)`,
  );
}
