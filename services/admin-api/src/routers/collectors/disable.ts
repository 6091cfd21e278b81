import { z } from 'zod';
import { adminProcedure } from '../../trpc/init';
import { CollectorSchema } from '../../collectors/collector-schema';
import { setEnabled } from '../../collectors/set-enabled';

/** The edge refuses the collector's pushes (403 COLLECTOR_DISABLED) within a second. */
export const disable = adminProcedure
  .input(z.object({ id: z.uuid() }))
  .output(CollectorSchema)
  .mutation(({ ctx, input }) => setEnabled(ctx, input.id, false));
