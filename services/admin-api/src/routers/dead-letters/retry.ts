import { z } from 'zod';
import { AppError } from '@pga/contracts';
import { adminProcedure } from '../../trpc/init';
import { writeAudit } from '../../audit/write-audit';
import { actorOf } from '../../audit/actor';

/**
 * Puts failed push jobs back into the queue: one (`job_id`) or all of them. Safe to repeat — the
 * writer's ledger stores each push once, however often it is delivered.
 */
export const retry = adminProcedure
  .input(z.union([z.object({ job_id: z.string().min(1).max(200) }), z.object({ all: z.literal(true) })]))
  .output(z.object({ retried: z.number().int() }))
  .mutation(async ({ ctx, input }) => {
    const queue = ctx.deps.pushQueue();
    let retried: number;
    if ('job_id' in input) {
      const job = await queue.getJob(input.job_id);
      if (!job || !(await job.isFailed())) throw new AppError('NOT_FOUND', 'no failed job with this id');
      await job.retry('failed');
      retried = 1;
    } else {
      retried = await queue.getFailedCount();
      await queue.retryJobs({ state: 'failed', count: 1000 });
    }
    await writeAudit(ctx.deps.pool, actorOf(ctx), {
      action: 'dead_letter.retried',
      entityType: 'dead_letter',
      entityId: 'job_id' in input ? input.job_id : null,
      details: { retried, all: !('job_id' in input) },
    });
    return { retried };
  });
