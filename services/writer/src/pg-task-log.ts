import { isDatabaseUnavailable, pgErrorCode, unavailableReason } from '@pga/db';
import { createReasonThrottle, isConnectionError, type Logger, type OutageLog, type ReasonThrottle } from '@pga/logger';

/** What a task's failure for one reason keeps of its first: what it says, its SQLSTATE if any. */
interface Failing {
  reason: string;
  code: string | undefined;
}

/**
 * The writer's scheduled PostgreSQL work (the maintenance jobs, the heartbeat flush) while
 * PostgreSQL cannot serve it for a while: one line per task and reason, a summary a minute, one
 * line when the task succeeds again. Until 2026-12-07 each failure of a PostgreSQL that was up but
 * refusing (out of disk, 53100) was a warning with a stack and the statement's whole SQL (the
 * error's `where`): every 5 s for the rollup fold, every second for the heartbeat flush, every 15 s
 * for the sweep, for as long as the disk stayed full.
 *
 * - A connection error (PostgreSQL away, shutting down, starting up) goes to the process's
 *   PostgreSQL outage log as before (`pgOutage`: one outage for every task and batch).
 * - PostgreSQL up but unable to do the work now (`isDatabaseUnavailable`: out of disk, memory or
 *   connections, read-only, a statement or lock timeout, a pool that found no connection in time):
 *   the task's first failure for that reason is a warning with the error in full (its stack,
 *   SQLSTATE, hint and where); later ones are counted, with one summary per `everyMs` while it lasts
 *   (written at the first failure after that time); `succeeded(task)` ends it with one line saying
 *   how long it lasted (when: @pga/logger's `createReasonThrottle`, one per failing task).
 * - Any other error is logged as it comes, with the caller's message (a bug, a permission revoked:
 *   for an operator).
 */
export function createPgTaskLog(
  logger: Logger,
  pgOutage: OutageLog,
  { everyMs = 60_000, now = Date.now }: { everyMs?: number; now?: () => number } = {},
) {
  const failing = new Map<string, ReasonThrottle<Failing>>();
  const seconds = (ms: number) => Math.round(ms / 100) / 10;
  const failures = (n: number) => `${n} failure${n === 1 ? '' : 's'}`;
  return {
    /**
     * A failure of `task` (a name such as `maintenance job rollup`, `heartbeat flush`); `message`:
     * the line written for an error that is not PostgreSQL being unavailable.
     */
    failed(task: string, err: unknown, message: string, fields: Record<string, unknown> = {}): void {
      if (isConnectionError(err)) return pgOutage.error(err, message, fields);
      if (!isDatabaseUnavailable(err)) {
        logger.warn({ ...fields, err }, message);
        return;
      }
      const code = pgErrorCode(err);
      // Errors without a SQLSTATE (a pool's "timeout exceeded when trying to connect") by their text.
      const key = code ?? (err instanceof Error ? err.message : String(err));
      const text = err instanceof Error ? err.message : String(err);
      let reasons = failing.get(task);
      if (!reasons) failing.set(task, (reasons = createReasonThrottle<Failing>({ everyMs, now })));
      const line = reasons.note(key, () => ({ reason: unavailableReason(err), code }));
      if (!line) return;
      const { since, lastLine, count, data } = line.reason;
      if (line.first) {
        logger.warn(
          { ...fields, task, sqlstate: code, err },
          `${task} failed: ${data.reason}${code ? ` (SQLSTATE ${code})` : ''}: ${text}; it is retried as before, ` +
            `and the same failure is summarised once a minute until it succeeds`,
        );
        return;
      }
      logger.warn(
        { ...fields, task, sqlstate: code, err: text, failures: count, seconds: seconds(lastLine - since) },
        `${task} still failing after ${seconds(lastLine - since)} s: ${data.reason} (${failures(count)})`,
      );
    },
    /** `task` succeeded: one line for each reason it was failing for. */
    succeeded(task: string): void {
      const reasons = failing.get(task);
      if (!reasons) return;
      failing.delete(task);
      const t = reasons.now();
      for (const { since, count, data } of reasons.end())
        logger.info(
          { task, sqlstate: data.code, failures: count, seconds: seconds(t - since) },
          `${task} succeeded again after ${seconds(t - since)} s of failing: ${data.reason} (${failures(count)})`,
        );
    },
    /** Whether `task` is failing for a reason of this log's (not the outage log's). */
    failing(task: string): boolean {
      return failing.has(task);
    },
  };
}

export type PgTaskLog = ReturnType<typeof createPgTaskLog>;
