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

type JobPush = {
  push_id?: unknown;
  collector_id?: unknown;
  body?: unknown;
  body_base64?: unknown;
  body_ref?: { bytes?: unknown };
};

/** Size of a push's body: v1 carries it as text, v2 as base64, v3 a large one's size (its body is apart). */
function bodyBytes(p: JobPush): number {
  if (typeof p.body === 'string') return Buffer.byteLength(p.body);
  if (typeof p.body_ref?.bytes === 'number') return p.body_ref.bytes;
  return typeof p.body_base64 === 'string' ? Buffer.byteLength(p.body_base64, 'base64') : 0;
}

export function toDeadLetter(job: Job): DeadLetter {
  const pushes: JobPush[] = Array.isArray(job.data?.pushes) ? job.data.pushes : [];
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
    bytes: pushes.reduce((n, p) => n + bodyBytes(p), 0),
  };
}
