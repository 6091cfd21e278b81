import { z } from 'zod';
import { authedProcedure } from '../../trpc/init';
import { DeadLetterSchema, toDeadLetter } from './dead-letter-schema';

/** Failed jobs of the push queue (the writer fails poison pushes there), newest first. */
export const list = authedProcedure
  .input(
    z
      .object({ page: z.number().int().min(1).default(1), page_size: z.number().int().min(1).max(200).default(50) })
      .default({ page: 1, page_size: 50 }),
  )
  .output(
    z.object({ items: z.array(DeadLetterSchema), total: z.number().int(), page: z.number().int(), page_size: z.number().int() }),
  )
  .query(async ({ ctx, input }) => {
    const queue = ctx.deps.pushQueue();
    const start = (input.page - 1) * input.page_size;
    const [jobs, total] = await Promise.all([queue.getFailed(start, start + input.page_size - 1), queue.getFailedCount()]);
    return { items: jobs.filter(Boolean).map(toDeadLetter), total, page: input.page, page_size: input.page_size };
  });
