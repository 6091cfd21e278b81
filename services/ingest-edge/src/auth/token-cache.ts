/**
 * One JWT_SECRET key as the edge uses it: counted by reference from each cached token, so a
 * request adds to its key's count without a lookup (the kid is looked up once, on a cache miss).
 */
export interface KeyUse {
  readonly id: string;
  /** The key that signs new tokens: a token signed by another one is told to refresh (heartbeat). */
  readonly active: boolean;
  /** Tokens this key verified (cache misses). */
  verifications: number;
  /** Requests authenticated with a token of this key (hits and misses). */
  requests: number;
}

/** What the edge remembers about a verified token. */
export interface CachedToken {
  collectorId: string;
  jti: string;
  /** `exp` in ms since the epoch. */
  expiresAtMs: number;
  /** The key that verified it. */
  key: KeyUse;
}

/**
 * Verified tokens keyed by the token's SHA-256, so the hot path skips signature verification.
 * Bounded: past `maxEntries` the oldest insertion is evicted (a Map iterates in insertion order).
 * Expiry is honoured on every read. Revocation is not the cache's job: the deny state is checked on
 * every request, hit or miss, so a revoked token is refused the moment the change arrives.
 */
export class TokenCache {
  private readonly entries = new Map<string, CachedToken>();
  hits = 0;
  misses = 0;
  /**
   * How the lookups that missed ended, counted by the authenticator once the verification is done
   * (so that a scrape in between never sees a count go down): verified, or invalid (forged,
   * expired, malformed). `misses` counts them as they happen.
   */
  verified = 0;
  invalid = 0;

  constructor(private readonly maxEntries: number) {}

  get(tokenHash: string, nowMs = Date.now()): CachedToken | undefined {
    const entry = this.entries.get(tokenHash);
    if (!entry) {
      this.misses++;
      return undefined;
    }
    if (entry.expiresAtMs <= nowMs) {
      this.entries.delete(tokenHash);
      this.misses++;
      return undefined;
    }
    this.hits++;
    return entry;
  }

  set(tokenHash: string, token: CachedToken): void {
    if (this.entries.size >= this.maxEntries && !this.entries.has(tokenHash)) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
    this.entries.set(tokenHash, token);
  }

  get size(): number {
    return this.entries.size;
  }

  clear(): void {
    this.entries.clear();
  }
}
