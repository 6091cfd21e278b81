import { z } from 'zod';

/**
 * One push inside a packed v1 job. The body travels as the exact bytes received (a latin1/utf8
 * string is fine because it was validated as UTF-8 JSON at the edge), never re-serialised, so 64-bit
 * integers survive. The edge now writes v2 (below); the writer reads both.
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

/**
 * v2 (what the edge writes): the body as base64 of the received bytes. A JSON string of the body
 * itself needs every `"` and `\\` escaped — a byte loop that cost the edge ~6 % of its CPU per push
 * and the writer's JSON.parse more than base64 does; base64 is one native call each way, for a
 * third more bytes in Redis.
 */
export const PushItemV2Schema = PushItemSchema.omit({ body: true }).extend({
  /** base64 of the decompressed JSON body, exactly as sent. */
  body_base64: z.string(),
});
export type PushItemV2 = z.infer<typeof PushItemV2Schema>;

/**
 * v3 (what the edge writes for a push of LARGE_PUSH_BYTES or more, alone in its job): the body is
 * not in the job but in Redis, in a hash of 1 MiB pieces (redis-keys `pushBlob`). A 64 MiB body as
 * one argument of BullMQ's add script held Redis for 1–5 s, every other client waiting; written piece
 * by piece it never holds it for more than a millisecond or two. Jobs holding no such push stay v2,
 * so a writer that predates v3 reads them.
 */
export const PushBodyRefSchema = z.object({
  /** The hash's key: fields "0" … String(pieces - 1), each a piece of the body in order. */
  key: z.string().min(1),
  /** The body's size in bytes (the pieces added up). */
  bytes: z.number().int().positive(),
  pieces: z.number().int().positive(),
});
export const PushItemRefSchema = PushItemSchema.omit({ body: true }).extend({ body_ref: PushBodyRefSchema });
export type PushItemRef = z.infer<typeof PushItemRefSchema>;

/**
 * The edge's replay window (its IDEMPOTENCY_TTL_SECONDS) when the job was written: a push whose id
 * the ledger already holds from an acceptance at least this much earlier is a new push by
 * CONTRACT.md (same `push_id`/key, or the identical body, after the 24 h), not a redelivery. Jobs
 * without it (written by an older edge) get the contract's 24 h.
 */
const replayWindow = z.number().int().positive().optional();
export const DEFAULT_REPLAY_WINDOW_SECONDS = 86_400;

/** A job packs the pushes the edge received in one short window. v1 jobs are still read. */
export const PushJobSchema = z.discriminatedUnion('v', [
  z.object({ v: z.literal(1), replay_window_s: replayWindow, pushes: z.array(PushItemSchema).min(1) }),
  z.object({ v: z.literal(2), replay_window_s: replayWindow, pushes: z.array(PushItemV2Schema).min(1) }),
  z.object({
    v: z.literal(3),
    replay_window_s: replayWindow,
    pushes: z.array(z.union([PushItemV2Schema, PushItemRefSchema])).min(1),
  }),
]);
export type PushJob = z.infer<typeof PushJobSchema>;

/**
 * A message of the change feed carrying token revocations / collector state changes to every edge.
 * Its queue and channel names are in `@pga/redis-keys` (`pushQueue`, `changesChannel`), under the
 * installation's key prefix.
 */
export const CollectorChangeSchema = z.object({
  collector_id: z.uuid(),
  kind: z.enum(['revoked', 'rotated', 'disabled', 'enabled', 'deleted', 'restored', 'config', 'command']),
  /** Token ids that must no longer be accepted (rotation/revocation). */
  jtis: z.array(z.string()).optional(),
  /** Monotonic version of the deny state at publication. */
  version: z.number().int().optional(),
});
export type CollectorChange = z.infer<typeof CollectorChangeSchema>;
