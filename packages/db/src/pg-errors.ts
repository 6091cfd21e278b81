// @pga/logger's wider test: 08, 57P01-57P03, socket and TLS codes, no-SQLSTATE connection errors.
import { isConnectionError } from '@pga/logger';

/** SQLSTATE helpers: errors are classified by code and constraint name, never by message text. */

export function pgErrorCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string' ? err.code : undefined;
}

export function pgConstraint(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'constraint' in err && typeof err.constraint === 'string'
    ? err.constraint
    : undefined;
}

export function isUniqueViolation(err: unknown, constraint?: string): boolean {
  return pgErrorCode(err) === '23505' && (constraint === undefined || pgConstraint(err) === constraint);
}

/**
 * PostgreSQL 15's and 16's "could not write init file": a backend starting (a new connection) could
 * not write the relation-cache initialization file (pg_internal.init), which a restart or crash
 * recovery removes and the first connection to each database writes again. Raised with `elog(FATAL)`
 * (relcache.c, `write_item` / `write_relcache_init_file`), so SQLSTATE XX000 with no errno in the
 * text, though what fails is an `fwrite` to the data directory: on a full disk, after a PANIC on WAL
 * had restarted the server, every new connection fails this way until space is freed (newer
 * releases report it with `errcode_for_file_access()`: 53100 for ENOSPC). Told by the source file
 * and function node-postgres reports (whatever the server's lc_messages), by the English text for a
 * server or proxy that does not send them. Every other XX000 stays what errcodes.txt says the class
 * is: "can't-happen conditions and software bugs".
 */
function isInitFileWriteFailure(err: unknown): boolean {
  if (pgErrorCode(err) !== 'XX000' || !(err instanceof Error)) return false;
  const { file, routine } = err as { file?: unknown; routine?: unknown };
  if (typeof file === 'string')
    return file === 'relcache.c' && (routine === 'write_item' || routine === 'write_relcache_init_file');
  return err.message.startsWith('could not write init file');
}

/**
 * The SQLSTATE an error is classified by: its own, except PostgreSQL 15/16's relcache init file that
 * could not be written (`isInitFileWriteFailure`, XX000), read as the disk full (53100) it mostly is
 * and newer releases report. A log line still shows the error's own code.
 */
function classifiedCode(err: unknown): string | undefined {
  return isInitFileWriteFailure(err) ? '53100' : pgErrorCode(err);
}

/**
 * PostgreSQL cannot write to its data directory: disk full (53100), or PostgreSQL 15/16's
 * relcache init file not written at connection start (XX000 "could not write init file", mostly a
 * full disk after a restart).
 */
export function isDiskFull(err: unknown): boolean {
  return classifiedCode(err) === '53100';
}

/**
 * Worth retrying: connection exceptions (08*), serialization failure / deadlock (40001, 40P01),
 * admin shutdown / crash shutdown / cannot connect now (57P01-57P03), a cancelled statement (57014:
 * pg_cancel_backend, a statement timeout), insufficient resources (53*, and PostgreSQL 15/16's
 * "could not write init file" of a full disk: `isDiskFull`), lock not available (55P03), a
 * read-only database (25006: connected to the old primary or a replica during a failover, until DNS
 * moves), the session ended for idling in a transaction (25P03) or idling at all (57P05,
 * idle_session_timeout, PostgreSQL 14+: a new connection is not idle), and Node socket errors (no
 * SQLSTATE) such as ECONNREFUSED. Not 57P04 (the database was dropped), class 58 (an I/O error,
 * a file missing or already there: errors of the machine, which a retry meets again) nor any other
 * XX (PostgreSQL's internal errors: bugs and corruption).
 */
export function isTransientPgError(err: unknown): boolean {
  const code = classifiedCode(err);
  if (code === undefined) return false;
  if (isSocketErrorCode(code)) return true;
  return (
    code.startsWith('08') ||
    code.startsWith('53') ||
    code === '40001' ||
    code === '40P01' ||
    code === '55P03' ||
    code === '57P01' ||
    code === '57P02' ||
    code === '57P03' ||
    code === '57014' ||
    code === '25006' ||
    code === '25P03' ||
    code === '57P05'
  );
}

/**
 * node-postgres's and pg-pool's own errors for a server that cannot be reached or went away carry no
 * SQLSTATE: only their text tells them from a bug (the one place this module reads a message).
 */
const NO_SQLSTATE_CONNECTION_ERRORS =
  /^(Connection terminated|timeout exceeded when trying to connect|timeout expired|Client has encountered a connection error|Client was closed and is not queryable)/;

/** A Node socket or DNS error code (ECONNREFUSED, ECONNRESET, ETIMEDOUT, EAI_AGAIN …), never a SQLSTATE. */
function isSocketErrorCode(code: string): boolean {
  return /^(E[A-Z]+|EAI_[A-Z]+)$/.test(code);
}

/**
 * The connection itself failed, whatever PostgreSQL would have said: a Node socket or DNS error
 * (ECONNREFUSED, ECONNRESET, EAI_AGAIN …), or one of node-postgres's / pg-pool's connection errors
 * that have no SQLSTATE (Connection terminated, a connect timeout …). No SQLSTATE is one.
 */
export function isLostConnection(err: unknown): boolean {
  const code = pgErrorCode(err);
  if (code !== undefined) return isSocketErrorCode(code);
  return err instanceof Error && NO_SQLSTATE_CONNECTION_ERRORS.test(err.message);
}

/**
 * The database is unavailable rather than the request wrong: a transient SQLSTATE or Node socket
 * error (`isTransientPgError`), or one of node-postgres's connection errors that have no SQLSTATE.
 * What a service answers with 503 + Retry-After instead of 500.
 */
export function isDatabaseUnavailable(err: unknown): boolean {
  return isTransientPgError(err) || isLostConnection(err);
}

/**
 * What a PostgreSQL that cannot serve a request now is doing, by SQLSTATE, for a log line or an
 * answer (never the driver's message): a full disk (53100) is not a PostgreSQL that is away.
 */
export function unavailableReason(err: unknown): string {
  if (isInitFileWriteFailure(err)) return 'PostgreSQL cannot write to its data directory (disk full?)';
  const code = pgErrorCode(err);
  if (code === '53100') return 'PostgreSQL is out of disk space (disk full)';
  if (code === '53300') return 'PostgreSQL has no free connection (too many connections)';
  if (code === '53200') return 'PostgreSQL is out of memory';
  if (code === '25006') return 'PostgreSQL is read-only (a failover in progress?)';
  if (code === '57014') return 'PostgreSQL cancelled the statement (a statement timeout)';
  if (code === '40001' || code === '40P01') return 'PostgreSQL could not serialise the request with another one';
  if (code === '55P03') return 'PostgreSQL could not take a lock in time';
  if (code === '57P05') return 'PostgreSQL closed an idle session (idle_session_timeout)';
  return 'PostgreSQL is unavailable';
}

/** What `pgErrorKind` tells apart: a metric label's whole set. */
export const PG_ERROR_KINDS = [
  'disk_full',
  'out_of_resources',
  'unreachable',
  'read_only',
  'timeout',
  'conflict',
  'other',
] as const;
export type PgErrorKind = (typeof PG_ERROR_KINDS)[number];

/**
 * Which of a few kinds a PostgreSQL error is, for a metric's label (a bounded set, where SQLSTATEs
 * and messages are not):
 * - `disk_full`: 53100, and PostgreSQL 15/16's XX000 "could not write init file" (`isDiskFull`);
 * - `out_of_resources`: any other 53 (out of memory 53200, too many connections 53300, a
 *   configuration limit 53400);
 * - `unreachable`: a connection exception (08), PostgreSQL shutting down, restarting or starting
 *   (57P01-57P03), a socket, DNS or TLS error, node-postgres's errors of a connection gone (no SQLSTATE);
 * - `read_only`: 25006 (a failover: the old primary, or a replica);
 * - `timeout`: a statement cancelled (57014, a statement timeout), a lock not granted in time
 *   (55P03), a session ended for idling in a transaction (25P03) or idle (57P05), a pool that found no
 *   connection in time;
 * - `conflict`: a serialization failure or deadlock (40001, 40P01);
 * - `other`: any other SQLSTATE (a permission, a missing table, a data error, a trigger's; the
 *   database dropped, 57P04; an I/O error or a file missing, class 58; an internal error, XX).
 * Undefined for an error that is not PostgreSQL's: no SQLSTATE and not about the connection (a bug).
 */
export function pgErrorKind(err: unknown): PgErrorKind | undefined {
  const code = classifiedCode(err);
  if (code === undefined) {
    if (!(err instanceof Error)) return undefined;
    if (/^(timeout exceeded when trying to connect|timeout expired)/.test(err.message)) return 'timeout';
    return isDatabaseUnavailable(err) || isConnectionError(err) ? 'unreachable' : undefined;
  }
  if (code === '53100') return 'disk_full';
  if (code.startsWith('53')) return 'out_of_resources';
  // (isConnectionError: 08, 57P01-57P03, socket and TLS codes.)
  if (isConnectionError(err) || isSocketErrorCode(code)) return 'unreachable';
  if (code === '25006') return 'read_only';
  if (code === '57014' || code === '55P03' || code === '25P03' || code === '57P05') return 'timeout';
  if (code === '40001' || code === '40P01') return 'conflict';
  return /^[0-9A-Z]{5}$/.test(code) ? 'other' : undefined;
}
