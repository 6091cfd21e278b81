import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { PushJobSchema } from '@pga/contracts';
import { encodePushJob } from './encode-push-job';
import type { PushSubmission } from './push-packer';

const fixture = readFileSync(new URL('../../../../test/fixtures/pganalytics-v3-push.sample.json', import.meta.url));

const push = (body: Buffer, n = 0): PushSubmission => ({
  push_id: `0b5a3c1e-1f2a-8b3c-9d4e-${String(n).padStart(12, '0')}`,
  collector_id: '7d1f9a2b-3c4d-4e5f-8a6b-7c8d9e0f1a2b',
  received_at: new Date(1_700_000_000_000 + n).toISOString(),
  checksum: 'ab'.repeat(32),
  body,
});

/** What the packer sent before: JSON.stringify of the job with each body as a string. */
const reference = (pushes: PushSubmission[]) =>
  JSON.stringify({ v: 1, pushes: pushes.map((p) => ({ ...p, body: p.body.toString('utf8') })) });

describe('encodePushJob', () => {
  it('writes the bytes JSON.stringify gives, for the fixture and every character that needs an escape', () => {
    const tricky = Buffer.from('{"q":"a \\" b \\\\ c \\n","u":"é ✓ 😀 \u2028","raw":"\t\r\n\b\f\u0001\u001f\u007f"}\r\n\t');
    const pushes = [push(fixture, 1), push(tricky, 2), push(Buffer.from('{}'), 3)];
    const encoded = encodePushJob(pushes);
    expect(encoded.toString('utf8')).toBe(reference(pushes));
    const parsed = PushJobSchema.parse(JSON.parse(encoded.toString('utf8')));
    expect(parsed.pushes[0]!.body).toBe(fixture.toString('utf8'));
    // 64-bit integers stay text: the body is carried, never parsed and re-serialised.
    expect(parsed.pushes[0]!.body).toContain(String(fixture.toString('utf8').match(/\d{17,}/)?.[0] ?? ''));
  });

  it('agrees with JSON.stringify on random bytes and on jobs larger than its scratch buffer', () => {
    for (let i = 0; i < 200; i++) {
      // Random ASCII incl. control characters (UTF-8 by construction).
      const body = Buffer.from(randomBytes(1 + (i % 97) * 13).map((b) => b & 0x7f));
      const pushes = [push(body, i), push(fixture, i + 1)];
      expect(encodePushJob(pushes).toString('utf8')).toBe(reference(pushes));
    }
    const big = Array.from({ length: 300 }, (_, i) => push(Buffer.from(`{"x":"${'"\\'.repeat(600)}"}`), i));
    expect(encodePushJob(big).toString('utf8')).toBe(reference(big));
  });

  it('escapes a field that is not a plain id', () => {
    const odd = { ...push(Buffer.from('{}')), received_at: 'a "quoted" \\ time' };
    expect(encodePushJob([odd]).toString('utf8')).toBe(reference([odd]));
  });
});
