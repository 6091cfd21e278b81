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

/**
 * Per-collector byte budget, per edge process (a token bucket of bytes): what one collector's pushes
 * may put on the shared Redis and writer per second. A push is refused up front (429) while its
 * collector's bucket is empty; once read, its decoded size is charged — a push bigger than what is
 * left still goes through (its bytes are here already: refusing it then would only make the
 * collector send them again) and leaves the bucket in debt, which the next pushes wait out: a push
 * of any allowed size can be sent, and the collector's average stays at the rate.
 */
export class ByteRateLimiter {
  private readonly buckets = new Map<string, { bytes: number; at: number }>();
  private lastSweep = 0;

  constructor(
    private readonly bytesPerSecond: number,
    private readonly burst: number,
  ) {}

  /** 0 when the collector may send now, else the whole seconds until its bucket is out of debt. */
  wait(key: string, nowMs = Date.now()): number {
    const bucket = this.bucket(key, nowMs);
    return !bucket || bucket.bytes > 0 ? 0 : Math.max(1, Math.ceil((1 - bucket.bytes) / this.bytesPerSecond));
  }

  /** Charges `bytes` read for a push of this collector. */
  charge(key: string, bytes: number, nowMs = Date.now()): void {
    const bucket = this.bucket(key, nowMs);
    if (!bucket) return;
    bucket.bytes -= bytes;
    this.buckets.set(key, bucket);
  }

  private bucket(key: string, nowMs: number): { bytes: number; at: number } | undefined {
    if (this.bytesPerSecond <= 0) return undefined;
    if (nowMs - this.lastSweep > 60_000) this.sweep(nowMs);
    const bucket = this.buckets.get(key);
    if (!bucket) return { bytes: this.burst, at: nowMs };
    bucket.bytes = Math.min(this.burst, bucket.bytes + ((nowMs - bucket.at) / 1000) * this.bytesPerSecond);
    bucket.at = nowMs;
    return bucket;
  }

  /** Buckets full again are forgotten (a new one starts full). */
  private sweep(nowMs: number): void {
    this.lastSweep = nowMs;
    for (const [key, b] of this.buckets)
      if (b.bytes + ((nowMs - b.at) / 1000) * this.bytesPerSecond >= this.burst) this.buckets.delete(key);
  }
}
