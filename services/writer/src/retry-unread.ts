import { Job, type Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { PushJobSchema } from '@pga/contracts';
import type { Logger } from '@pga/logger';

/** How an older writer's dead letter begins when it could not read a job (prepare-push.ts). */
const UNREAD = 'not a PushJob';
/** Failed jobs looked at per call: a sweep does not stall on a failed set of a million. */
const PER_CALL = 1000;
/** bullmq's answers for a job that is gone or no longer failed (an admin retried it meanwhile). */
const NOT_FAILED = /^(Missing key for job|Job .* is not in the failed state)/;

/**
 * Puts back into the queue the dead letters an older writer made of jobs it could not read — a job
 * format newer than it (an edge upgraded before the writers: a version-3 job, a large push's body in
 * Redis apart from it) — once this writer reads them. Such a job failed with "not a PushJob" and
 * nothing of it was stored; its large body stays in Redis with it. Other dead letters (a push that
 * can never be stored, a job this writer cannot read either) are left for an admin.
 *
 * Called by each sweep (single-flight across writers). Each writer process remembers up to which
 * failure time it has looked (the failed set is scored by it), so its first call reads the whole
 * failed set, PER_CALL at a time, and later ones only what failed since.
 */
export function createUnreadRetrier(queue: Queue, redis: Redis, logger: Logger) {
  let since = 0;
  return async function retryUnread(): Promise<number> {
    const key = queue.toKey('failed');
    const page = await redis.zrangebyscore(key, since, '+inf', 'WITHSCORES', 'LIMIT', 0, PER_CALL);
    if (page.length === 0) return 0;
    const ids: string[] = [];
    for (let i = 0; i < page.length; i += 2) ids.push(page[i]!);
    const first = Number(page[1]);
    const last = Number(page.at(-1));
    // Next time from the last failure time seen (inclusive: others may share its millisecond); a full
    // page all in one millisecond moves past it, or the next call would read the same page again.
    since = ids.length === PER_CALL && first === last ? last + 1 : last;
    const reasons = await Promise.all(ids.map((id) => redis.hget(queue.toKey(id), 'failedReason')));
    const retried: string[] = [];
    for (const [i, id] of ids.entries()) {
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
