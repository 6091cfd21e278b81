import { isTransientPgError, pgErrorCode } from '@pga/db';
import { PoisonPushError } from './prepare-push';

/**
 * - `poison`: the data itself cannot be stored (our own checks, or SQLSTATE class 22 data exception,
 *   23 integrity violation, 54 program limit, e.g. jsonb rejecting `\u0000`; XX000 "invalid memory alloc
 *   request size", a jsonb row too large to parse) → isolate, then dead-letter.
 * - `transient`: worth retrying by SQLSTATE (`isTransientPgError`: 08*, 40001, 40P01, 53*, 55P03, 57P0x, 57014, 25006, 25P03 …;
 *   and 23514 from DEFAULT's own bound when its day's partition was attached during the COPY), or a
 *   connection-level failure that carries no SQLSTATE at all (the server went away mid-statement:
 *   node-postgres raises "Connection terminated unexpectedly" without a code).
 * - `fatal`: any other server error (42P01 missing table, 42501 permission …): an operator must act;
 *   the job fails normally and BullMQ's own attempts/backoff apply.
 */
export type ErrorClass = 'poison' | 'transient' | 'fatal';

export function classifyError(err: unknown): ErrorClass {
  if (err instanceof PoisonPushError) return 'poison';
  const code = pgErrorCode(err);
  if (code === undefined) return 'transient';
  if (isTransientPgError(err)) return 'transient';
  // Refused while logging in, before any push was sent: never the data's fault, whatever the class
  // (a startup option PostgreSQL rejects is 22023).
  if (isConnectFailure(err)) return 'fatal';
  if (isDefaultPartitionRace(err)) return 'transient';
  if (code.startsWith('22') || code.startsWith('23') || code.startsWith('54')) return 'poison';
  // A row jsonb's parser cannot hold (an array of over 2^24 elements, an object of over 2^23 keys)
  // asks palloc for 1 GiB or more: XX000, not 54000. The edge refuses such rows (scan-push-json.ts);
  // one that got past it (an older edge) is poison, not an operator's problem retried ten times.
  // Told by the source file node-postgres reports (`mcxt.c`, PostgreSQL's allocator), whatever the
  // server's lc_messages; by the English text too, for a server that does not send it.
  if (
    code === 'XX000' &&
    err instanceof Error &&
    (('file' in err && err.file === 'mcxt.c') || err.message.startsWith('invalid memory alloc request size'))
  )
    return 'poison';
  return 'fatal';
}

/**
 * 23514 on `collector_metrics_default` without a constraint name: PostgreSQL's check of the DEFAULT
 * partition's own bound, not a CHECK constraint. A COPY routes its rows by the partitions there were
 * when it started; a row of a day that had none goes to DEFAULT, and when maintenance attaches that
 * day's partition meanwhile (pga_create_metric_partition: its transaction holds DEFAULT, the COPY
 * waits for it), DEFAULT's bound excludes the day by the time the row goes in. Nothing is wrong with
 * the push: tried again, the row goes to the new partition. Taken for poison, a job of one push
 * was a dead letter (`23514 new row for relation "collector_metrics_default" violates partition
 * constraint`), and a larger batch was stored push by push.
 */
function isDefaultPartitionRace(err: unknown): boolean {
  const e = err as { code?: unknown; table?: unknown; constraint?: unknown } | null;
  return e?.code === '23514' && e.table === 'collector_metrics_default' && e.constraint === undefined;
}

const connectFailures = new WeakSet<object>();

/**
 * Marks (and returns) an error that opening a batch's connection raised, before any push was sent:
 * a wrong password after a rotation (28P01), a role no longer allowed to log in (28000), the
 * database gone (3D000). No push can cause it, so it is everyone's however few collectors the batch
 * holds (`isEveryones`); a fleet of one or two collectors used to spend every job's attempts on it.
 */
export function connectFailure(err: unknown): unknown {
  if (typeof err === 'object' && err !== null) connectFailures.add(err);
  return err;
}

/** Whether `connectFailure` marked this error. */
export const isConnectFailure = (err: unknown): boolean => typeof err === 'object' && err !== null && connectFailures.has(err);
