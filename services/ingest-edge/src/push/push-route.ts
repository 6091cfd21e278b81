import { AppError, IDEMPOTENCY_KEY_PATTERN } from '@pga/contracts';
import type { Authenticate } from '../auth/authenticate';
import type { ByteRateLimiter, RateLimiter } from '../auth/rate-limiter';
import type { CollectorShares } from '../http/collector-shares';
import { overBudget, type InflightBudget } from '../http/read-body';
import type { RequestContext } from '../http/route';
import type { QueueHealth } from '../ops/queue-health';
import { checkEncoding, checkJsonContentType, decodeBody, type InflateBudget } from './decode-body';
import { LARGE_PUSH_BYTES, type LargePushThread } from './large-push-thread';
import { preparePush } from './prepare-push';
import type { PushOutcome, PushPacker } from './push-packer';
import type { PushQuota } from './push-quota';

export const PUSH_HEADERS = ['authorization', 'x-collector-id', 'content-type', 'content-encoding', 'idempotency-key'] as const;

interface PushDeps {
  authenticate: Authenticate;
  limiter: RateLimiter;
  byteLimiter: ByteRateLimiter;
  packer: PushPacker;
  /** Collectors past their push quota are refused before their body is read. */
  quota?: PushQuota;
  largePushes: LargePushThread;
  queueHealth: QueueHealth;
  budget: InflightBudget;
  /** Each collector's share of the in-flight budget (MAX_INFLIGHT_BYTES_PER_COLLECTOR). */
  shares: CollectorShares;
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
    const owed = deps.byteLimiter.wait(auth.collectorId);
    if (owed > 0)
      throw new AppError('RATE_LIMITED', 'this collector sent more push bytes than its rate allows', { retryAfterSeconds: owed });
    deps.quota?.check(auth.collectorId);
    deps.queueHealth.assertAccepting();
    // The collector's share of the in-flight budget: its declared bytes now (a chunked body's
    // maxBodyBytes until read), then its inflated copy as it comes out; all given back at the end.
    const collector = auth.collectorId;
    const declared = Number(headers['content-length'] || NaN);
    const length = Number.isFinite(declared) ? declared : undefined;
    if (length !== undefined && length > deps.maxBodyBytes) await body!.body; // refused already: 413, not 429
    const admitted = deps.shares.admit(collector, length);
    if (admitted === false) throw pastShare(collector);
    let counted = admitted;
    try {
      const raw = await body!.body;
      deps.shares.adjust(collector, raw.length - counted);
      counted = raw.length;
      deps.authenticate.recheck(auth);
      // An inflated body's bytes are in the budget and the share (reserved as they come out):
      // given back below.
      let pastItsShare = false;
      const inflating: InflateBudget = {
        take: (n) => {
          if (!deps.shares.take(collector, n)) return !(pastItsShare = true);
          if (deps.budget.take(n)) return ((counted += n), true);
          deps.shares.adjust(collector, -n);
          return false;
        },
        give: (n) => {
          deps.budget.give(n);
          deps.shares.adjust(collector, -n);
          counted -= n;
        },
        refusal: () => (pastItsShare ? pastShare(collector) : overBudget()),
      };
      const decoding = decodeBody(raw, headers['content-encoding']!, deps.maxBodyBytes, inflating);
      const decoded = decoding instanceof Promise ? await decoding : decoding;
      deps.byteLimiter.charge(collector, decoded.length);
      const extra = decoded === raw ? 0 : decoded.length;
      try {
        const request = { body: decoded, collectorId: auth.collectorId, idempotencyHeader: idemHeader };
        const receivedAt = new Date().toISOString();
        const size = decoded.length;
        let outcome: PushOutcome;
        if (size < LARGE_PUSH_BYTES) {
          const p = preparePush(request);
          outcome = await deps.packer.submit(
            { push_id: p.pushId, collector_id: auth.collectorId, received_at: receivedAt, checksum: p.checksum, body: decoded },
            p.key,
            p.records,
          );
        } else {
          // Off the event loop; the body's bytes are handed to the thread and come back with `p`.
          const p = await deps.largePushes.prepare(request);
          outcome = await deps.packer.submit(
            {
              push_id: p.pushId,
              collector_id: auth.collectorId,
              received_at: receivedAt,
              checksum: p.checksum,
              body: p.body,
              large: true,
            },
            p.key,
            p.records,
          );
        }
        reply.json(200, { status: 'accepted', push_id: outcome.pushId, records: outcome.records, duplicate: outcome.duplicate });
      } finally {
        deps.budget.give(extra);
      }
    } finally {
      deps.shares.release(collector, counted);
    }
  };

  function pastShare(collector: string): AppError {
    return new AppError(
      'RATE_LIMITED',
      `this collector already has ${formatBytes(deps.shares.usedBy(collector))} of pushes in flight on this edge process (its share: ${formatBytes(deps.shares.share)})`,
      { retryAfterSeconds: 1 },
    );
  }
}

const formatBytes = (n: number) => (n >= 1024 * 1024 ? `${(n / (1024 * 1024)).toFixed(1)} MiB` : `${Math.ceil(n / 1024)} KiB`);
