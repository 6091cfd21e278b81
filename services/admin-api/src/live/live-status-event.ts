import { z } from 'zod';
import { CollectorStatusSchema } from '@pga/contracts';

/** What the writer publishes on `keys.statusChannel` (common conventions), as streamed to the UI. */
export const LiveStatusEventSchema = z.object({
  collector_id: z.uuid(),
  status: CollectorStatusSchema,
  last_heartbeat: z.string().nullable().optional(),
  last_metric_at: z.string().nullable().optional(),
  metrics_collected: z.coerce.number().nullable().optional(),
});
export type LiveStatusEvent = z.infer<typeof LiveStatusEventSchema>;
