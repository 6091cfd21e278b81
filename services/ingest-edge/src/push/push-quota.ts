import { AppError } from '@pga/contracts';

/** The push quota's window: PUSH_QUOTA_PER_HOUR counts a collector's new pushes per hour. */
export const PUSH_QUOTA_WINDOW_SECONDS = 3600;

/** What edge_rejections_total counts a push refused by the quota as (it is answered RATE_LIMITED). */
export const PUSH_QUOTA_REASON = 'PUSH_QUOTA';

/**
 * The per-collector push quota (PUSH_QUOTA_PER_HOUR): new pushes — idempotency markers set, each
 * kept in Redis for the replay window — per collector per hour, counted in Redis across every edge
 * process by the packer's claim script (no round trip of its own). A collector the claim found over
 * its quota is refused here, before its body is read, until its window ends: the claim says when
 * (`refuse`), and this process answers its pushes 429 + Retry-After without asking Redis again.
 */
export class PushQuota {
  /** Collector id → when its window ends (epoch ms): the collectors over quota this process knows. */
  private readonly blocked = new Map<string, number>();

  constructor(
    /** New pushes per collector per window; 0: no quota. */
    readonly limit: number,
    readonly windowSeconds = PUSH_QUOTA_WINDOW_SECONDS,
  ) {}

  /** Throws the quota's 429 when this collector is known to be over its quota. */
  check(collectorId: string): void {
    if (this.blocked.size === 0) return;
    const until = this.blocked.get(collectorId);
    if (until === undefined) return;
    const left = until - Date.now();
    if (left > 0) throw this.refusal(Math.ceil(left / 1000));
    this.blocked.delete(collectorId);
  }

  /** The claim refused a push of this collector: its window ends in `seconds`. Answers its refusal. */
  refuse(collectorId: string, seconds: number): AppError {
    const wait = Math.max(1, Math.min(Math.ceil(seconds) || 1, this.windowSeconds));
    this.blocked.set(collectorId, Date.now() + wait * 1000);
    if (this.blocked.size > 1024) for (const [id, until] of this.blocked) if (until <= Date.now()) this.blocked.delete(id);
    return this.refusal(wait);
  }

  private refusal(seconds: number): AppError {
    return new AppError(
      'RATE_LIMITED',
      `this collector used its push quota: ${this.limit} new pushes per ${this.windowSeconds / 3600} h (PUSH_QUOTA_PER_HOUR), across all edge processes; retry in ${seconds} s`,
      { retryAfterSeconds: seconds, reason: PUSH_QUOTA_REASON },
    );
  }
}
