import { isUtf8 } from 'node:buffer';
import { hash } from 'node:crypto';
import { AppError } from '@pga/contracts';
import { derivePushId } from './push-id';
import { scanPushJson } from './scan-push-json';

export interface PushRequest {
  /** The body as decoded (inflated when it came gzipped). */
  body: Buffer;
  /** The authenticated collector (lower case). */
  collectorId: string;
  /** The request's `Idempotency-Key` ('' when absent; checked against the contract's pattern already). */
  idempotencyHeader: string;
}

export interface PreparedPush {
  pushId: string;
  /** SHA-256 of the body, hex. */
  checksum: string;
  /** The push's idempotency key: `k:<Idempotency-Key or push_id>`, else `b:<checksum>`. */
  key: string;
  /** Elements of its `metrics` array, 1 for a flat push. */
  records: number;
}

/**
 * Everything the edge works out from a push body before packing it: UTF-8 and JSON validity (the
 * scan), the body's `collector_id` against the token's, the checksum, the idempotency key and the
 * push id. The same code runs on the event loop for the usual few-KB push and in the large-push
 * thread for big bodies (`large-push-thread.ts`), so both answer alike.
 */
export function preparePush({ body, collectorId, idempotencyHeader }: PushRequest): PreparedPush {
  if (body.length === 0) throw new AppError('INVALID_JSON', 'body is empty');
  if (!isUtf8(body)) throw new AppError('INVALID_JSON', 'body is not UTF-8');
  const scan = scanPushJson(body);
  if (scan.collectorId !== undefined && scan.collectorId.toLowerCase() !== collectorId)
    throw new AppError('COLLECTOR_MISMATCH', 'collector_id in the body does not match the token');
  const checksum = hash('sha256', body, 'hex');
  // CONTRACT.md: Idempotency-Key, else the body's push_id, else the identical body (24 h).
  const key = idempotencyHeader ? `k:${idempotencyHeader}` : scan.pushId !== undefined ? `k:${scan.pushId}` : `b:${checksum}`;
  return { pushId: derivePushId(collectorId, key), checksum, key, records: scan.metricsCount ?? 1 };
}
