import { describe, expect, it } from 'vitest';
import { derivePushId } from '../push/push-id';
import { ByteRateLimiter, FailureLimiter, RateLimiter } from './rate-limiter';
import { TokenCache } from './token-cache';

const key = { id: 'k1', active: true, verifications: 0, requests: 0 };

describe('TokenCache', () => {
  it('honours exp, evicts the oldest past its size, counts hits and misses', () => {
    const cache = new TokenCache(2);
    cache.set('a', { collectorId: 'c', jti: 'j1', expiresAtMs: 1000, key });
    expect(cache.get('a', 999)?.jti).toBe('j1');
    expect(cache.get('a', 1000)).toBeUndefined();
    cache.set('b', { collectorId: 'c', jti: 'j2', expiresAtMs: 5000, key });
    cache.set('c', { collectorId: 'c', jti: 'j3', expiresAtMs: 5000, key });
    cache.set('d', { collectorId: 'c', jti: 'j4', expiresAtMs: 5000, key });
    expect(cache.size).toBe(2);
    expect(cache.get('b', 0)).toBeUndefined();
    expect(cache.get('d', 0)?.jti).toBe('j4');
    expect([cache.hits, cache.misses]).toEqual([2, 2]);
  });
});

describe('RateLimiter', () => {
  it('allows the burst, then refills at the rate, per key', () => {
    const limiter = new RateLimiter(2, 3);
    expect([0, 1, 2, 3].map(() => limiter.take('x', 0))).toEqual([0, 0, 0, 1]);
    expect(limiter.take('y', 0)).toBe(0);
    expect(limiter.take('x', 499)).toBeGreaterThan(0);
    expect(limiter.take('x', 500)).toBe(0);
    expect(new RateLimiter(0, 1).take('x', 0)).toBe(0);
  });
});

describe('ByteRateLimiter', () => {
  it('lets a push through while the bucket holds bytes, charges it after, and makes the next wait out the debt', () => {
    const bytes = new ByteRateLimiter(1000, 5000);
    expect(bytes.wait('x', 0)).toBe(0);
    bytes.charge('x', 4000, 0);
    expect(bytes.wait('x', 0)).toBe(0); // 1,000 left
    bytes.charge('x', 3500, 0); // larger than what was left: through, 2,500 in debt
    expect(bytes.wait('x', 0)).toBe(3);
    expect(bytes.wait('y', 0)).toBe(0); // per collector
    expect(bytes.wait('x', 2400)).toBe(1); // 100 still owed
    expect(bytes.wait('x', 2600)).toBe(0);
    // Refills up to the burst, never beyond.
    bytes.charge('x', 5000, 60_000);
    expect(bytes.wait('x', 60_000)).toBe(1);
    expect(new ByteRateLimiter(0, 1).wait('x', 0)).toBe(0);
  });
});

describe('derivePushId', () => {
  it('is a stable UUID per (collector, key), different across collectors', () => {
    const a = derivePushId('c1', 'k:1');
    expect(a).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(derivePushId('c1', 'k:1')).toBe(a);
    expect(derivePushId('c2', 'k:1')).not.toBe(a);
  });
});

describe('FailureLimiter', () => {
  it('lets `burst` failures through, then waits for one to refill; successes cost nothing', () => {
    const limiter = new FailureLimiter(1 / 30, 3);
    for (let i = 0; i < 3; i++) {
      expect(limiter.wait('ip', 1000)).toBe(0);
      limiter.fail('ip', 1000);
    }
    expect(limiter.wait('ip', 1000)).toBe(30);
    expect(limiter.wait('other', 1000)).toBe(0);
    expect(limiter.wait('ip', 1000 + 29_000)).toBe(1);
    expect(limiter.wait('ip', 1000 + 30_000)).toBe(0);
    // Failures already in flight when it emptied leave a debt the next attempts wait out.
    limiter.fail('ip', 31_000);
    limiter.fail('ip', 31_000);
    expect(limiter.wait('ip', 31_000)).toBe(60);
  });
});
