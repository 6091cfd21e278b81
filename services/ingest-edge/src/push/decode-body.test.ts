import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { InflightBudget } from '../http/read-body';
import { decodeBody } from './decode-body';

const MiB = 1024 * 1024;

/** Records the highest reservation, to show an inflation never went past the budget. */
class WatchedBudget extends InflightBudget {
  peak = 0;
  override take(n: number): boolean {
    const ok = super.take(n);
    this.peak = Math.max(this.peak, this.used);
    return ok;
  }
}

/** decodeBody throws on the spot for a body inflated synchronously, else rejects. */
const codeOf = async (decode: () => unknown) => {
  try {
    await decode();
    return 'ok';
  } catch (err) {
    return (err as { code: string }).code;
  }
};

describe('decodeBody with the in-flight budget', () => {
  const big = gzipSync(Buffer.alloc(5 * MiB, 0x20)); // 5 MiB of JSON whitespace, a few KB of gzip

  it('reserves an inflated body in the budget (the caller gives it back), on the spot or streamed', async () => {
    const budget = new WatchedBudget(64 * MiB);
    const small = decodeBody(gzipSync('{"a":1}'), 'gzip', 64 * MiB, budget) as Buffer;
    expect([small.toString(), budget.used]).toEqual(['{"a":1}', 7]);
    budget.give(small.length);
    const out = await decodeBody(big, 'gzip', 64 * MiB, budget);
    expect([out.length, budget.used]).toEqual([5 * MiB, 5 * MiB]);
    // A plain body is the received bytes, already counted by the reader: nothing reserved.
    const plain = Buffer.from('{"b":2}');
    expect(decodeBody(plain, 'gzip', 64 * MiB, budget)).toBe(plain);
    expect(budget.used).toBe(5 * MiB);
  });

  it('stops inflating at the budget (503) instead of inflating up to MAX_BODY_BYTES first, and gives back what it took', async () => {
    const budget = new WatchedBudget(1 * MiB);
    expect(await codeOf(() => decodeBody(big, 'gzip', 64 * MiB, budget))).toBe('UNAVAILABLE');
    expect(budget.peak).toBeLessThanOrEqual(1 * MiB);
    expect(budget.used).toBe(0);
    // The on-the-spot path too (under 2 MiB inflated).
    const mid = gzipSync(Buffer.alloc(1.5 * MiB, 0x20));
    expect(await codeOf(() => decodeBody(mid, 'gzip', 64 * MiB, budget))).toBe('UNAVAILABLE');
    expect(budget.used).toBe(0);
  });

  it('413 past the size cap and 400 for broken gzip, with nothing left reserved', async () => {
    const budget = new WatchedBudget(64 * MiB);
    expect(await codeOf(() => decodeBody(big, 'gzip', 4 * MiB, budget))).toBe('PAYLOAD_TOO_LARGE');
    expect(budget.used).toBe(0);
    const broken = Buffer.concat([big.subarray(0, big.length - 20), Buffer.alloc(70 * 1024, 7)]);
    expect(await codeOf(() => decodeBody(broken, 'gzip', 64 * MiB, budget))).toBe('INVALID_PAYLOAD');
    expect(budget.used).toBe(0);
  });
});
