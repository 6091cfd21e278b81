interface Bucket {
  tokens: number;
  at: number;
}

/**
 * Per-key token buckets: `rate` tokens a second up to `burst`. In memory per edge process: a
 * collector's keep-alive connection stays on one process, so the effective limits are per process.
 * A bucket full again is forgotten (a new one starts full), so the map stays bounded by the
 * collectors active in the last minute or so.
 */
class TokenBuckets {
  private readonly buckets = new Map<string, Bucket>();
  private lastSweep = 0;

  constructor(
    readonly rate: number,
    private readonly burst: number,
  ) {}

  /** The key's bucket refilled up to `nowMs` (a new key's is full; kept once something is taken). */
  get(key: string, nowMs: number): Bucket {
    if (nowMs - this.lastSweep > 60_000) this.sweep(nowMs);
    const bucket = this.buckets.get(key);
    if (!bucket) return { tokens: this.burst, at: nowMs };
    bucket.tokens = Math.min(this.burst, bucket.tokens + ((nowMs - bucket.at) / 1000) * this.rate);
    bucket.at = nowMs;
    return bucket;
  }

  /** Takes `n` tokens from a bucket `get` returned (its level may go below zero). */
  take(key: string, bucket: Bucket, n: number): void {
    bucket.tokens -= n;
    this.buckets.set(key, bucket);
  }

  /** Whole seconds until the bucket holds `level` tokens again (at least 1). */
  secondsUntil(bucket: Bucket, level: number): number {
    return Math.max(1, Math.ceil((level - bucket.tokens) / this.rate));
  }

  private sweep(nowMs: number): void {
    this.lastSweep = nowMs;
    for (const [key, b] of this.buckets)
      if (b.tokens + ((nowMs - b.at) / 1000) * this.rate >= this.burst) this.buckets.delete(key);
  }
}

/** Per-collector request rate (issue 4 §2): `ratePerSecond` refill, `burst` capacity; 0 disables. */
export class RateLimiter {
  private readonly buckets: TokenBuckets;

  constructor(ratePerSecond: number, burst: number) {
    this.buckets = new TokenBuckets(ratePerSecond, burst);
  }

  /** Takes one token; returns 0 when allowed, else the seconds to wait (for Retry-After). */
  take(key: string, nowMs = Date.now()): number {
    if (this.buckets.rate <= 0) return 0;
    const bucket = this.buckets.get(key, nowMs);
    if (bucket.tokens < 1) return this.buckets.secondsUntil(bucket, 1);
    this.buckets.take(key, bucket, 1);
    return 0;
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
  private readonly buckets: TokenBuckets;

  constructor(bytesPerSecond: number, burst: number) {
    this.buckets = new TokenBuckets(bytesPerSecond, burst);
  }

  /** 0 when the collector may send now, else the whole seconds until its bucket is out of debt. */
  wait(key: string, nowMs = Date.now()): number {
    if (this.buckets.rate <= 0) return 0;
    const bucket = this.buckets.get(key, nowMs);
    return bucket.tokens > 0 ? 0 : this.buckets.secondsUntil(bucket, 1);
  }

  /** Charges `bytes` read for a push of this collector. */
  charge(key: string, bytes: number, nowMs = Date.now()): void {
    if (this.buckets.rate <= 0) return;
    this.buckets.take(key, this.buckets.get(key, nowMs), bytes);
  }
}

/**
 * Failures per key (e.g. failed enrollments per client IP), per edge process: `burst` failures
 * pass, then one more each `1 / ratePerSecond` seconds. Only a failure is charged (`fail`), so a
 * client that keeps succeeding is never held up; failures that were already in flight when the
 * bucket emptied leave it in debt, which the next attempts wait out.
 */
export class FailureLimiter {
  private readonly buckets: TokenBuckets;

  constructor(ratePerSecond: number, burst: number) {
    this.buckets = new TokenBuckets(ratePerSecond, burst);
  }

  /** 0 when the key may try now, else the whole seconds until it may (for Retry-After). */
  wait(key: string, nowMs = Date.now()): number {
    if (this.buckets.rate <= 0) return 0;
    const bucket = this.buckets.get(key, nowMs);
    return bucket.tokens >= 1 ? 0 : this.buckets.secondsUntil(bucket, 1);
  }

  /** Charges one failure to the key. */
  fail(key: string, nowMs = Date.now()): void {
    if (this.buckets.rate <= 0) return;
    this.buckets.take(key, this.buckets.get(key, nowMs), 1);
  }
}
