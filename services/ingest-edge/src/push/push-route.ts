import { isUtf8 } from 'node:buffer';
import { hash } from 'node:crypto';
import { AppError, IDEMPOTENCY_KEY_PATTERN } from '@pga/contracts';
import type { Authenticate } from '../auth/authenticate';
import type { RateLimiter } from '../auth/rate-limiter';
import type { InflightBudget } from '../http/read-body';
import type { RequestContext } from '../http/route';
import type { QueueHealth } from '../ops/queue-health';
import { checkEncoding, checkJsonContentType, decodeBody } from './decode-body';
import { derivePushId } from './push-id';
import type { PushPacker } from './push-packer';
import { scanPushJson } from './scan-push-json';

export const PUSH_HEADERS = ['authorization', 'x-collector-id', 'content-type', 'content-encoding', 'idempotency-key'] as const;

interface PushDeps {
  authenticate: Authenticate;
  limiter: RateLimiter;
  packer: PushPacker;
  queueHealth: QueueHealth;
  budget: InflightBudget;
  maxBodyBytes: number;
}

/** `POST /api/v1/metrics/push` (CONTRACT.md): the 200 goes out only once Redis holds the push. */
export function createPushHandler(deps: PushDeps) {
  return async ({ reply, headers, body }: RequestContext): Promise<void> => {
    checkJsonContentType(headers['content-type']!);
    checkEncoding(headers['content-encoding']!);
    const idemHeader = headers['idempotency-key']!;
    if (idemHeader && !IDEMPOTENCY_KEY_PATTERN.test(idemHeader))
      throw new AppError('INVALID_PAYLOAD', 'Idempotency-Key must be 1-128 printable ASCII characters');
    const auth = await deps.authenticate({ authorization: headers.authorization!, collectorId: headers['x-collector-id']! });
    const wait = deps.limiter.take(auth.collectorId);
    if (wait > 0) throw new AppError('RATE_LIMITED', 'too many requests from this collector', { retryAfterSeconds: wait });
    deps.queueHealth.assertAccepting();

    const raw = await body!.body;
    deps.authenticate.recheck(auth);
    // An inflated body's bytes are in the budget (reserved as they came out): given back below.
    const decoding = decodeBody(raw, headers['content-encoding']!, deps.maxBodyBytes, deps.budget);
    const decoded = decoding instanceof Promise ? await decoding : decoding;
    const extra = decoded === raw ? 0 : decoded.length;
    try {
      if (decoded.length === 0) throw new AppError('INVALID_JSON', 'body is empty');
      if (!isUtf8(decoded)) throw new AppError('INVALID_JSON', 'body is not UTF-8');
      const scan = scanPushJson(decoded);
      if (scan.collectorId !== undefined && scan.collectorId.toLowerCase() !== auth.collectorId)
        throw new AppError('COLLECTOR_MISMATCH', 'collector_id in the body does not match the token');
      const checksum = hash('sha256', decoded, 'hex');
      // CONTRACT.md: Idempotency-Key, else the body's push_id, else the identical body (24 h).
      const key = idemHeader ? `k:${idemHeader}` : scan.pushId !== undefined ? `k:${scan.pushId}` : `b:${checksum}`;
      const pushId = derivePushId(auth.collectorId, key);
      const outcome = await deps.packer.submit(
        {
          push_id: pushId,
          collector_id: auth.collectorId,
          received_at: new Date().toISOString(),
          checksum,
          body: decoded,
        },
        key,
        scan.metricsCount ?? 1,
      );
      reply.json(200, { status: 'accepted', push_id: outcome.pushId, records: outcome.records, duplicate: outcome.duplicate });
    } finally {
      deps.budget.give(extra);
    }
  };
}
