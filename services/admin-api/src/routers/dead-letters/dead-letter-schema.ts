import { z } from 'zod';
import type { Job } from 'bullmq';

/** A failed push job, described without its bodies (metrics may carry query texts). */
export const DeadLetterSchema = z.object({
  id: z.string(),
  failed_reason: z.string().nullable(),
  attempts_made: z.number().int(),
  enqueued_at: z.string().nullable(),
  failed_at: z.string().nullable(),
  pushes: z.number().int(),
  collector_ids: z.array(z.string()),
  push_ids: z.array(z.string()),
  bytes: z.number().int(),
});
export type DeadLetter = z.infer<typeof DeadLetterSchema>;

export function toDeadLetter(job: Job): DeadLetter {
  const pushes: { push_id?: unknown; collector_id?: unknown; body?: unknown }[] = Array.isArray(job.data?.pushes)
    ? job.data.pushes
    : [];
  const iso = (ms: number | undefined) => (ms ? new Date(ms).toISOString() : null);
  return {
    id: String(job.id),
    failed_reason: job.failedReason ?? null,
    attempts_made: job.attemptsMade,
    enqueued_at: iso(job.timestamp),
    failed_at: iso(job.finishedOn),
    pushes: pushes.length,
    collector_ids: [...new Set(pushes.map((p) => String(p.collector_id)))],
    push_ids: pushes.map((p) => String(p.push_id)),
    bytes: pushes.reduce((n, p) => n + (typeof p.body === 'string' ? Buffer.byteLength(p.body) : 0), 0),
  };
}
