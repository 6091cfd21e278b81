import { Job } from 'bullmq';
import { z } from 'zod';
import { authedProcedure } from '../../trpc/init';
import { pageFields, pageOf } from '../page-schema';
import { DeadLetterSchema, toDeadLetter } from './dead-letter-schema';

/**
 * Failed jobs of the push queue (the writer fails poison pushes there), newest first. The page's ids
 * first, then one job at a time, summarised and dropped: a job carries its whole push bodies (up to
 * PACK_MAX_BYTES, or one 64 MiB push), and fetching a page at once (bullmq's getFailed) built one
 * Redis reply and one heap of up to 200 of them.
 */
export const list = authedProcedure
  .input(z.object(pageFields(200)).default({ page: 1, page_size: 50 }))
  .output(pageOf(DeadLetterSchema))
  .query(async ({ ctx, input }) => {
    const queue = ctx.deps.pushQueue();
    const start = (input.page - 1) * input.page_size;
    const [ids, total] = await Promise.all([
      queue.getRanges(['failed'], start, start + input.page_size - 1),
      queue.getFailedCount(),
    ]);
    const items = [];
    for (const id of ids) {
      const job = await Job.fromId(queue, id);
      if (job) items.push(toDeadLetter(job)); // gone meanwhile (retried, removed): skipped
    }
    return { items, total, page: input.page, page_size: input.page_size };
  });
