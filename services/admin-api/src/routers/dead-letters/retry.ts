import { Job, type Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import { AppError } from '@pga/contracts';
import { adminProcedure } from '../../trpc/init';
import { writeAudit } from '../../audit/write-audit';
import { actorOf } from '../../audit/actor';

/** Most failed jobs one `all` call moves (its audit row names them all); the answer says how many remain. */
export const RETRY_ALL_MAX = 1000;
/** Moves sent to Redis at once (one pipeline: ioredis writes them without waiting for each answer). */
const PIPELINE = 100;

/** A retried job starts its attempts (and BullMQ's backoff) afresh, like a new one. */
const RESET = { resetAttemptsMade: true, resetAttemptsStarted: true } as const;
/** bullmq's answers for a job that is gone or no longer failed (someone retried it meanwhile). */
const NOT_FAILED = /^(Missing key for job|Job .* is not in the failed state)/;

/**
 * Moves one failed job back to the queue; false when it is no longer failed. Only the id is needed
 * (the script reads nothing else of the job): its data — whole push bodies — is never loaded.
 */
async function retryOne(queue: Queue, id: string): Promise<boolean> {
  try {
    await new Job(queue, 'push', undefined, {}, id).retry('failed', RESET);
    return true;
  } catch (err) {
    if (err instanceof Error && NOT_FAILED.test(err.message)) return false;
    throw err;
  }
}

/**
 * The failed jobs `all` is about: those failed by the time of the newest failure when the first call
 * ran (the failed set's score is each job's failure time), oldest first, at most `limit`. A job that
 * fails again after its retry scores later and is left for another "retry all": a poison job is not
 * retried in a loop.
 */
async function retryFailedUpTo(
  redis: Redis,
  queue: Queue,
  limit: number,
  cutoff: number | undefined,
): Promise<{ ids: string[]; remaining: number; cutoff: number | null }> {
  const failed = queue.keys.failed!;
  if (cutoff === undefined) {
    const newest = await redis.zrevrange(failed, 0, 0, 'WITHSCORES');
    if (newest.length < 2) return { ids: [], remaining: 0, cutoff: null };
    cutoff = Number(newest[1]);
  }
  const candidates = await redis.zrangebyscore(failed, '-inf', cutoff, 'LIMIT', 0, limit);
  const ids: string[] = [];
  for (let i = 0; i < candidates.length; i += PIPELINE) {
    const batch = candidates.slice(i, i + PIPELINE);
    const moved = await Promise.all(batch.map((id) => retryOne(queue, id)));
    batch.forEach((id, j) => moved[j] && ids.push(id));
  }
  return { ids, remaining: await redis.zcount(failed, '-inf', cutoff), cutoff };
}

/**
 * Puts failed push jobs back into the queue: one (`job_id`) or all of them (`all`), the latter at most
 * `limit` (≤ RETRY_ALL_MAX) a call: its answer's `remaining` counts the jobs of the same "all" still
 * failed, and the caller goes on by sending the answer's `cutoff` back until `remaining` is 0 (a call
 * sends its moves PIPELINE at a time, not one round trip each). Until 2026-12-07 one
 * call moved every failed job, one round trip each: 100,000 dead letters held the request (and
 * Redis's attention) for minutes. Safe to repeat — the writer's ledger stores each push once,
 * however often it is delivered. Each retried job's attempt counters are reset: with its attempts
 * used up, one more failure (or stall) would send it straight back to the failed set, without the
 * backoff a new job gets. Each call writes one audit row with the count and the ids it moved.
 */
export const retry = adminProcedure
  .input(
    z.union([
      z.object({ job_id: z.string().min(1).max(200) }),
      z.object({
        all: z.literal(true),
        /** Most jobs this call moves. */
        limit: z.number().int().min(1).max(RETRY_ALL_MAX).default(RETRY_ALL_MAX),
        /** The previous call's `cutoff`: go on with the jobs that "all" started with. */
        cutoff: z.number().int().nonnegative().optional(),
      }),
    ]),
  )
  .output(
    z.object({
      retried: z.number().int(),
      /** `all` only: jobs failed by `cutoff` still in the failed set (retry again with `cutoff` to move them). */
      remaining: z.number().int().optional(),
      /** `all` only: the failure time (ms) the "all" covers up to; null when nothing had failed. */
      cutoff: z.number().int().nullable().optional(),
    }),
  )
  .mutation(async ({ ctx, input }) => {
    const queue = ctx.deps.pushQueue();
    if ('job_id' in input) {
      if (!(await retryOne(queue, input.job_id))) throw new AppError('NOT_FOUND', 'no failed job with this id');
      await writeAudit(ctx.deps.pool, actorOf(ctx), {
        action: 'dead_letter.retried',
        entityType: 'dead_letter',
        entityId: input.job_id,
        details: { retried: 1, all: false },
      });
      return { retried: 1 };
    }
    const { ids, remaining, cutoff } = await retryFailedUpTo(ctx.deps.redis, queue, input.limit, input.cutoff);
    await writeAudit(ctx.deps.pool, actorOf(ctx), {
      action: 'dead_letter.retried',
      entityType: 'dead_letter',
      entityId: null,
      details: { retried: ids.length, all: true, remaining, cutoff, job_ids: ids },
    });
    return { retried: ids.length, remaining, cutoff };
  });
