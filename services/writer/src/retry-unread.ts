import { Job, type Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { PushJobSchema } from '@pga/contracts';
import type { Logger } from '@pga/logger';

/** How an older writer's dead letter begins when it could not read a job (prepare-push.ts). */
const UNREAD = 'not a PushJob';
/** Failed jobs looked at per call: a sweep does not stall on a failed set of a million. */
const PER_CALL = 1000;
/** The newest failures of this long ago are read by every call, whatever the cursor. */
const RECENT_MS = 5 * 60_000;
/** bullmq's answers for a job that is gone or no longer failed (an admin retried it meanwhile). */
const NOT_FAILED = /^(Missing key for job|Job .* is not in the failed state)/;

/**
 * Puts back into the queue the dead letters an older writer made of jobs it could not read — a job
 * format newer than it (an edge upgraded before the writers: a version-3 job, a large push's body in
 * Redis apart from it) — once this writer reads them. Such a job failed with "not a PushJob" and
 * nothing of it was stored; its large body stays in Redis with it. Other dead letters (a push that
 * can never be stored, a job this writer cannot read either) are left for an admin.
 *
 * Called by each sweep (single-flight across writers), it reads at most 2 × PER_CALL failed jobs'
 * `failedReason` (and the data of those that match): the next PER_CALL by failure time from where
 * this process got to (so its first calls go through the whole failed set, oldest first), and the
 * newest PER_CALL of the last RECENT_MS. The failed set is scored by the failing writer's clock, so a
 * failure can arrive scored before others already read (writers' clocks apart, or just later): the
 * second read finds it, unless its writer's clock was more than RECENT_MS behind.
 */
export function createUnreadRetrier(queue: Queue, redis: Redis, logger: Logger) {
  /** Failure time from which this process has not read the failed set yet (inclusive)… */
  let cursor = 0;
  /** …past the first `skip` entries of that very millisecond (read already). */
  let skip = 0;
  return async function retryUnread(): Promise<number> {
    const key = queue.toKey('failed');
    const [page, recent] = await Promise.all([
      redis.zrangebyscore(key, cursor, '+inf', 'WITHSCORES', 'LIMIT', skip, PER_CALL),
      redis.zrevrangebyscore(key, '+inf', Date.now() - RECENT_MS, 'LIMIT', 0, PER_CALL),
    ]);
    const ids = new Set(recent);
    for (let i = 0; i < page.length; i += 2) ids.add(page[i]!);
    if (ids.size === 0) return 0;
    const list = [...ids];
    const reasons = await Promise.all(list.map((id) => redis.hget(queue.toKey(id), 'failedReason')));
    const retried: string[] = [];
    for (const [i, id] of list.entries()) {
      if (!reasons[i]?.startsWith(UNREAD)) continue;
      const raw = await redis.hget(queue.toKey(id), 'data');
      if (raw === null || !readable(raw)) continue;
      try {
        // Its attempts afresh, like the admin service's retry (admin-api dead-letters/retry.ts).
        await new Job(queue, 'push', undefined, {}, id).retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true });
        retried.push(id);
      } catch (err) {
        if (!(err instanceof Error && NOT_FAILED.test(err.message))) throw err;
      }
    }
    // Only now, the page done (an error above leaves the cursor for the next sweep): on from its last
    // failure time, past the entries of that millisecond it read and left in the failed set (others
    // may share the millisecond; the ones put back are gone from the set).
    if (page.length > 0) {
      const last = Number(page.at(-1));
      const gone = new Set(retried);
      let atLast = 0;
      for (let i = page.length - 1; i > 0 && Number(page[i]) === last; i -= 2) if (!gone.has(page[i - 1]!)) atLast++;
      skip = last === cursor ? skip + atLast : atLast;
      cursor = last;
    }
    if (retried.length > 0)
      logger.warn(
        { retried: retried.length, jobIds: retried.slice(0, 20) },
        `put back ${retried.length} dead letter(s) an older writer could not read (a newer job format); upgrade every writer before the edges`,
      );
    return retried.length;
  };
}

function readable(raw: string): boolean {
  try {
    return PushJobSchema.safeParse(JSON.parse(raw)).success;
  } catch {
    return false;
  }
}
