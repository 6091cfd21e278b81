import { hash } from 'node:crypto';
import { PushJobSchema, type PushItem, type PushItemV2 } from '@pga/contracts';
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
  /** The body as text (UTF-8 decoded). */
  text: string;
  split: SplitPush;
  /** Characters of metric text this push adds to a batch. */
  size: number;
}

/** One-shot SHA-256 (crypto.hash): no Hash object, and a string is hashed without a Buffer copy. */
const sha256 = (data: string | Buffer) => hash('sha256', data, 'hex');

/**
 * The edge may hand the body over as a UTF-8 string or as a latin1 string of the raw bytes (both are
 * allowed by @pga/contracts' PushItem). The checksum (SHA-256 of the bytes) tells which: pure ASCII
 * matches both, otherwise exactly one matches. Neither → the job was corrupted: poison.
 */
function bodyText(item: PushItem | PushItemV2): string {
  if ('body_base64' in item) {
    // v2: base64 of the bytes. Anything that is not base64 decodes to other bytes: poison below.
    const bytes = Buffer.from(item.body_base64, 'base64');
    if (sha256(bytes) === item.checksum) return bytes.toString('utf8');
    throw new PoisonPushError(`push ${item.push_id}: body does not match its checksum`);
  }
  if (sha256(item.body) === item.checksum) return item.body;
  const bytes = Buffer.from(item.body, 'latin1');
  if (sha256(bytes) === item.checksum) return bytes.toString('utf8');
  throw new PoisonPushError(`push ${item.push_id}: body does not match its checksum`);
}

export function preparePush(item: PushItem | PushItemV2): PreparedPush {
  const receivedAt = new Date(item.received_at);
  if (Number.isNaN(receivedAt.getTime())) throw new PoisonPushError(`push ${item.push_id}: received_at is not a time`);
  const checksum = item.checksum.toLowerCase();
  const text = bodyText({ ...item, checksum });
  let split: SplitPush;
  try {
    split = splitPush(text);
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
    text,
    split,
    size,
  };
}

/** Validates a job's data (PushJob v1 or v2) and prepares every push; throws PoisonPushError. */
export function preparePushJob(data: unknown): PreparedPush[] {
  const parsed = PushJobSchema.safeParse(data);
  if (!parsed.success) {
    throw new PoisonPushError(`not a PushJob: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  }
  const pushes: (PushItem | PushItemV2)[] = parsed.data.pushes;
  return pushes.map(preparePush);
}
