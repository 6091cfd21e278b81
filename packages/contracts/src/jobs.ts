import { z } from 'zod';

/** BullMQ queue the edge fills and the writer drains. */
export const PUSH_QUEUE = 'pga-pushes';

/**
 * One push inside a packed job. The body travels as the exact bytes received (base64 would cost
 * a third more; a latin1/utf8 string is fine because it was validated as UTF-8 JSON at the edge),
 * never re-serialised, so 64-bit integers survive.
 */
export const PushItemSchema = z.object({
  /** Push id (UUID) used by the ledger for exactly-once storage. */
  push_id: z.uuid(),
  collector_id: z.uuid(),
  /** ISO-8601 time the edge accepted the push; becomes `received_at`. */
  received_at: z.string(),
  /** SHA-256 hex of the (decompressed) body. */
  checksum: z.string().length(64),
  /** The decompressed JSON body, exactly as sent. */
  body: z.string(),
});
export type PushItem = z.infer<typeof PushItemSchema>;

/** A job packs the pushes the edge received in one short window. */
export const PushJobSchema = z.object({
  v: z.literal(1),
  pushes: z.array(PushItemSchema).min(1),
});
export type PushJob = z.infer<typeof PushJobSchema>;

/** Redis pub/sub channel carrying token revocations / collector state changes to every edge. */
export const COLLECTOR_CHANGES_CHANNEL = 'pga:collector-changes';

export const CollectorChangeSchema = z.object({
  collector_id: z.uuid(),
  kind: z.enum(['revoked', 'rotated', 'disabled', 'enabled', 'deleted', 'restored', 'config', 'command']),
  /** Token ids that must no longer be accepted (rotation/revocation). */
  jtis: z.array(z.string()).optional(),
  /** Monotonic version of the deny state at publication. */
  version: z.number().int().optional(),
});
export type CollectorChange = z.infer<typeof CollectorChangeSchema>;
