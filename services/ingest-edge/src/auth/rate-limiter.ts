/**
 * Per-collector token buckets (issue 4 §2): `ratePerSecond` refill, `burst` capacity. In memory per
 * edge process: a collector's keep-alive connection stays on one process, so the effective limit
 * is per process. Idle buckets are swept so the map stays bounded by active collectors.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private lastSweep = 0;

  constructor(
    private readonly ratePerSecond: number,
    private readonly burst: number,
  ) {}

  /** Takes one token; returns 0 when allowed, else the seconds to wait (for Retry-After). */
  take(key: string, nowMs = Date.now()): number {
    if (this.ratePerSecond <= 0) return 0;
    if (nowMs - this.lastSweep > 60_000) this.sweep(nowMs);
    let bucket = this.buckets.get(key);
    if (!bucket) {
      bucket = { tokens: this.burst, at: nowMs };
      this.buckets.set(key, bucket);
    } else {
      bucket.tokens = Math.min(this.burst, bucket.tokens + ((nowMs - bucket.at) / 1000) * this.ratePerSecond);
      bucket.at = nowMs;
    }
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - bucket.tokens) / this.ratePerSecond));
  }

  private sweep(nowMs: number): void {
    this.lastSweep = nowMs;
    const fullAfterMs = (this.burst / this.ratePerSecond) * 1000;
    for (const [key, bucket] of this.buckets) if (nowMs - bucket.at > fullAfterMs) this.buckets.delete(key);
  }
}
