import { describe, expect, it } from 'vitest';
import { backoffDelay, retryAfterDelay } from './backoff';

describe('backoffDelay', () => {
  const opts = { baseMs: 1000, maxMs: 60_000 };
  it('doubles per attempt within [half, full] of the exponential step', () => {
    expect(backoffDelay(1, opts, () => 0)).toBe(500);
    expect(backoffDelay(1, opts, () => 1)).toBe(1000);
    expect(backoffDelay(4, opts, () => 0)).toBe(4000);
    expect(backoffDelay(4, opts, () => 1)).toBe(8000);
  });
  it('is capped and jittered', () => {
    expect(backoffDelay(40, opts, () => 1)).toBe(60_000);
    expect(backoffDelay(40, opts, () => 0)).toBe(30_000);
    const seen = new Set(Array.from({ length: 20 }, () => backoffDelay(3, opts)));
    expect(seen.size).toBeGreaterThan(1);
  });
});

describe('retryAfterDelay', () => {
  const opts = { baseMs: 1000, maxMs: 60_000 };
  it('is Retry-After plus full jitter over the exponential step, capped at 30 s', () => {
    expect(retryAfterDelay(5000, 1, opts, () => 0)).toBe(5000);
    expect(retryAfterDelay(5000, 1, opts, () => 1)).toBe(6000);
    expect(retryAfterDelay(1000, 4, opts, () => 0.5)).toBe(5000);
    expect(retryAfterDelay(1000, 40, opts, () => 1)).toBe(31_000);
    expect(retryAfterDelay(1000, 6, opts, () => 1)).toBe(31_000);
    expect(retryAfterDelay(1000, 5, opts, () => 1)).toBe(17_000);
  });
});
