import { isUtf8 } from 'node:buffer';
import { hash } from 'node:crypto';
import { DEFAULT_REPLAY_WINDOW_SECONDS, PushJobSchema, type PushItem, type PushItemRef, type PushItemV2 } from '@pga/contracts';
import type { PushBlobs } from './push-blobs';
import { PushShapeError, splitPush, type SplitPush } from './split-push';

/** A push that can never be stored: its job fails once, with BullMQ's UnrecoverableError. */
export class PoisonPushError extends Error {
  override readonly name = 'PoisonPushError';
}

export interface PreparedPush {
  pushId: string;
  collectorId: string;
  receivedAt: Date;
  /** received_at as COPY text (ISO-8601 UTC). */
  receivedIso: string;
  checksum: string;
  /**
   * The body's bytes as received (UTF-8). Kept as a Buffer, not a string, until COMMIT: its bytes
   * live outside the JS heap, where young-generation collections do not copy them.
   */
  body: Buffer;
  split: SplitPush;
  /** Bytes of metric text (plus a row's other columns) this push adds to a batch. */
  size: number;
  /**
   * The accepting edge's replay window: the ledger treats this push id as already stored only when
   * it was accepted less than this long before (see INSERT_LEDGER).
   */
  replayWindowSeconds: number;
}

/** An ISO-8601 date and time (the edge writes `toISOString()`), its offset (group 1) optional. */
const ISO_DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(Z|[+-]\d{2}:\d{2})?$/;

/**
 * A push's `received_at`: an ISO-8601 date and time, UTC when it has no offset — JavaScript would
 * read that in this process's time zone, storing the push hours off on a writer not set to UTC. The
 * edge always writes `Z`; anything else is not a time (undefined).
 */
export function parseReceivedAt(text: string): Date | undefined {
  const iso = ISO_DATE_TIME.exec(text);
  if (!iso) return undefined;
  const at = new Date(iso[1] ? text : `${text}Z`);
  return Number.isNaN(at.getTime()) ? undefined : at;
}

/** One-shot SHA-256 (crypto.hash): no Hash object. */
const sha256 = (data: Buffer) => hash('sha256', data, 'hex');

type AnyPushItem = PushItem | PushItemV2 | PushItemRef;

/**
 * The body's bytes. v3 jobs refer to a large push's body in Redis (read beforehand: `blobs`); v2
 * jobs carry them as base64. v1 jobs carry a UTF-8 string or a latin1 string
 * of the raw bytes (both allowed by @pga/contracts' PushItem); the checksum (SHA-256 of the bytes)
 * tells which: pure ASCII matches both, otherwise exactly one matches. No match → the job was
 * corrupted (anything that is not base64 also decodes to other bytes): poison.
 */
function bodyBytes(item: AnyPushItem, checksum: string, blobs: PushBlobs): Buffer {
  let bytes: Buffer;
  if ('body_ref' in item) {
    const blob = blobs.get(item.body_ref.key) ?? 'was not read';
    if (typeof blob === 'string') throw new PoisonPushError(`push ${item.push_id}: its body ${blob} (key ${item.body_ref.key})`);
    bytes = blob;
  } else bytes = 'body_base64' in item ? Buffer.from(item.body_base64, 'base64') : Buffer.from(item.body, 'utf8');
  if (sha256(bytes) !== checksum) {
    if ('body' in item) bytes = Buffer.from(item.body, 'latin1');
    if (!('body' in item) || sha256(bytes) !== checksum)
      throw new PoisonPushError(`push ${item.push_id}: body does not match its checksum`);
  }
  // The edge refuses bodies that are not UTF-8; PostgreSQL would refuse one in the COPY as well.
  if (!isUtf8(bytes)) throw new PoisonPushError(`push ${item.push_id}: body is not UTF-8`);
  return bytes;
}

export function preparePush(
  item: AnyPushItem,
  replayWindowSeconds = DEFAULT_REPLAY_WINDOW_SECONDS,
  blobs: PushBlobs = new Map(),
): PreparedPush {
  const receivedAt = parseReceivedAt(item.received_at);
  if (!receivedAt) throw new PoisonPushError(`push ${item.push_id}: received_at is not an ISO-8601 time`);
  const checksum = item.checksum.toLowerCase();
  const body = bodyBytes(item, checksum, blobs);
  let split: SplitPush;
  try {
    split = splitPush(body);
  } catch (err) {
    if (err instanceof PushShapeError) throw new PoisonPushError(`push ${item.push_id}: ${err.message}`);
    throw err;
  }
  let size = 0;
  for (const s of split.slices) size += s.end - s.start + 160;
  // Lower case: PostgreSQL returns uuids in canonical lower case, and the ledger's RETURNING is
  // matched against these ids (an upper-case id would otherwise look like a duplicate and be lost).
  return {
    pushId: item.push_id.toLowerCase(),
    collectorId: item.collector_id.toLowerCase(),
    receivedAt,
    receivedIso: receivedAt.toISOString(),
    checksum,
    body,
    split,
    size,
    replayWindowSeconds,
  };
}

/**
 * Validates a job's data (PushJob v1, v2 or v3, whose large bodies `loadPushBlobs` read) and
 * prepares every push. A job that is not a PushJob
 * throws PoisonPushError; a push that can never be stored (checksum, UTF-8, shape) is reported in
 * `poison` instead, so the job's other pushes are still stored before the job fails.
 */
export function preparePushJob(data: unknown, blobs: PushBlobs = new Map()): { pushes: PreparedPush[]; poison: string[] } {
  const parsed = PushJobSchema.safeParse(data);
  if (!parsed.success) {
    throw new PoisonPushError(`not a PushJob: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  }
  const items: AnyPushItem[] = parsed.data.pushes;
  const window = parsed.data.replay_window_s ?? DEFAULT_REPLAY_WINDOW_SECONDS;
  const pushes: PreparedPush[] = [];
  const poison: string[] = [];
  for (const item of items) {
    try {
      pushes.push(preparePush(item, window, blobs));
    } catch (err) {
      if (!(err instanceof PoisonPushError)) throw err;
      poison.push(err.message);
    }
  }
  return { pushes, poison };
}
