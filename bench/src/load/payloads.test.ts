import { createHash } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { copyEscape, makeBodyPool } from './payloads';

describe('payloads', () => {
  it('builds ~2 KB envelopes whose elements are exact slices of the body, with 64-bit hashes as raw integers', () => {
    const pool = makeBodyPool(7, '2k', 8);
    for (const body of pool) {
      const text = body.json.toString();
      expect(body.json.length).toBeGreaterThan(1500);
      expect(body.json.length).toBeLessThan(2600);
      expect(JSON.parse(text).metrics).toHaveLength(body.elements.length);
      for (const e of body.elements) expect(text.includes(e.json)).toBe(true);
      expect(createHash('sha256').update(body.json).digest('hex')).toBe(body.checksum);
      expect(gunzipSync(body.gzip).equals(body.json)).toBe(true);
    }
    const hashes = pool.flatMap((b) => [...b.json.toString().matchAll(/"hash":(-?\d+)/g)].map((m) => BigInt(m[1]!)));
    expect(hashes.some((h) => h > 2n ** 53n || h < -(2n ** 53n))).toBe(true);
  });

  it('is deterministic for a seed (runs compare like with like)', () => {
    expect(makeBodyPool(42, '64k', 2)[1]!.checksum).toBe(makeBodyPool(42, '64k', 2)[1]!.checksum);
    expect(makeBodyPool(42, '64k', 1)[0]!.json.length).toBeGreaterThan(60_000);
  });

  it('escapes COPY text-format specials', () => {
    expect(copyEscape('a\\nb\tc\nd\re')).toBe('a\\\\nb\\tc\\nd\\re');
  });
});
