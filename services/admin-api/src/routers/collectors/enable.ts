import { z } from 'zod';
import { adminProcedure } from '../../trpc/init';
import { CollectorSchema } from '../../collectors/collector-schema';
import { setEnabled } from '../../collectors/set-enabled';

export const enable = adminProcedure
  .input(z.object({ id: z.uuid() }))
  .output(CollectorSchema)
  .mutation(({ ctx, input }) => setEnabled(ctx, input.id, true));
