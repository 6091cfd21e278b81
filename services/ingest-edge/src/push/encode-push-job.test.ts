import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { PushJobSchema } from '@pga/contracts';
import { encodePushJob } from './encode-push-job';
import type { PackedPush } from './push-packer';

const fixture = readFileSync(new URL('../../../../test/fixtures/pganalytics-v3-push.sample.json', import.meta.url));

const push = (body: Buffer, n = 0): PackedPush => ({
  push_id: `0b5a3c1e-1f2a-8b3c-9d4e-${String(n).padStart(12, '0')}`,
  collector_id: '7d1f9a2b-3c4d-4e5f-8a6b-7c8d9e0f1a2b',
  received_at: new Date(1_700_000_000_000 + n).toISOString(),
  checksum: 'ab'.repeat(32),
  body,
});

const WINDOW = 86_400;

/** The same job built as an object and serialised by JSON.stringify. */
const reference = (pushes: PackedPush[]) =>
  JSON.stringify({
    v: 2,
    replay_window_s: WINDOW,
    pushes: pushes.map(({ body, ...rest }) => ({ ...rest, body_base64: body.toString('base64') })),
  });

describe('encodePushJob', () => {
  it('writes the JSON.stringify text of a v2 job, and each body decodes to the bytes received', () => {
    const tricky = Buffer.from('{"q":"a \\" b \\\\ c \\n","u":"é ✓ 😀 \u2028"}\r\n\t');
    const pushes = [push(fixture, 1), push(tricky, 2), push(Buffer.from('{}'), 3)];
    const encoded = encodePushJob(pushes, WINDOW);
    expect(encoded.toString('utf8')).toBe(reference(pushes));
    const parsed = PushJobSchema.parse(JSON.parse(encoded.toString('utf8')));
    expect(parsed.v).toBe(2);
    expect(parsed.replay_window_s).toBe(WINDOW);
    if (parsed.v !== 2) return;
    parsed.pushes.forEach((p, i) => expect(Buffer.from(p.body_base64, 'base64').equals(pushes[i]!.body)).toBe(true));
    // 64-bit integers stay text: the body is carried as bytes, never parsed and re-serialised.
    const big = /\d{18,}/.exec(fixture.toString('utf8'))?.[0];
    expect(big).toBeDefined();
    expect(Buffer.from(parsed.pushes[0]!.body_base64, 'base64').toString('utf8')).toContain(big);
  });

  it('agrees with JSON.stringify on random bytes and on jobs larger than its scratch buffer', () => {
    for (let i = 0; i < 200; i++) {
      const pushes = [push(randomBytes(1 + (i % 97) * 13), i), push(fixture, i + 1)];
      expect(encodePushJob(pushes, WINDOW).toString('utf8')).toBe(reference(pushes));
    }
    const big = Array.from({ length: 300 }, (_, i) => push(randomBytes(4000), i));
    expect(encodePushJob(big, WINDOW).toString('utf8')).toBe(reference(big));
  });

  it('escapes a field that is not a plain id', () => {
    const odd = { ...push(Buffer.from('{}')), received_at: 'a "quoted" \\ time ✓' };
    expect(encodePushJob([odd], WINDOW).toString('utf8')).toBe(reference([odd]));
  });
});
