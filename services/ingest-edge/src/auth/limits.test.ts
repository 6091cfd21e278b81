import { describe, expect, it } from 'vitest';
import { derivePushId } from '../push/push-id';
import { RateLimiter } from './rate-limiter';
import { TokenCache } from './token-cache';

describe('TokenCache', () => {
  it('honours exp, evicts the oldest past its size, counts hits and misses', () => {
    const cache = new TokenCache(2);
    cache.set('a', { collectorId: 'c', jti: 'j1', expiresAtMs: 1000 });
    expect(cache.get('a', 999)?.jti).toBe('j1');
    expect(cache.get('a', 1000)).toBeUndefined();
    cache.set('b', { collectorId: 'c', jti: 'j2', expiresAtMs: 5000 });
    cache.set('c', { collectorId: 'c', jti: 'j3', expiresAtMs: 5000 });
    cache.set('d', { collectorId: 'c', jti: 'j4', expiresAtMs: 5000 });
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

describe('derivePushId', () => {
  it('is a stable UUID per (collector, key), different across collectors', () => {
    const a = derivePushId('c1', 'k:1');
    expect(a).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(derivePushId('c1', 'k:1')).toBe(a);
    expect(derivePushId('c2', 'k:1')).not.toBe(a);
  });
});
