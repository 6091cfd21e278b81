import { Job, type Queue } from 'bullmq';
import { z } from 'zod';
import { AppError } from '@pga/contracts';
import { adminProcedure } from '../../trpc/init';
import { writeAudit } from '../../audit/write-audit';
import { actorOf } from '../../audit/actor';

/** How many of the job ids a "retry all" moved its audit row names. */
const AUDITED_IDS = 1000;

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
 * Puts failed push jobs back into the queue: one (`job_id`) or all of them. Safe to repeat — the
 * writer's ledger stores each push once, however often it is delivered. Each retried job's attempt
 * counters are reset: with its attempts used up, one more failure (or stall) would send it straight
 * back to the failed set, without the backoff a new job gets. "All" retries the jobs failed when it
 * started (a poison job failing again at once is not retried in a loop).
 */
export const retry = adminProcedure
  .input(z.union([z.object({ job_id: z.string().min(1).max(200) }), z.object({ all: z.literal(true) })]))
  .output(z.object({ retried: z.number().int() }))
  .mutation(async ({ ctx, input }) => {
    const queue = ctx.deps.pushQueue();
    let retried = 0;
    /** The jobs "all" moved, for the audit row (the first AUDITED_IDS of them). */
    const ids: string[] = [];
    if ('job_id' in input) {
      if (!(await retryOne(queue, input.job_id))) throw new AppError('NOT_FOUND', 'no failed job with this id');
      retried = 1;
    } else {
      for (const id of await queue.getRanges(['failed'], 0, -1))
        if (await retryOne(queue, id)) {
          retried++;
          if (ids.length < AUDITED_IDS) ids.push(id);
        }
    }
    await writeAudit(ctx.deps.pool, actorOf(ctx), {
      action: 'dead_letter.retried',
      entityType: 'dead_letter',
      entityId: 'job_id' in input ? input.job_id : null,
      details: 'job_id' in input ? { retried, all: false } : { retried, all: true, job_ids: ids },
    });
    return { retried };
  });
