import { afterEach, describe, expect, it } from 'vitest';
import type { HttpResponse } from 'uWebSockets.js';
import { Reply, retryAfterRandom } from './respond';

/** The headers one answer was written with (a stand-in for uWS.js's HttpResponse). */
function answer(write: (reply: Reply) => void): Record<string, string> {
  const headers: Record<string, string> = {};
  const res = {
    cork: (fn: () => void) => fn(),
    writeStatus: () => res,
    writeHeader: (k: string, v: string) => ((headers[k] = v), res),
    tryEnd: () => [true, true],
  };
  write(new Reply(res as unknown as HttpResponse, () => undefined));
  return headers;
}

const pin = (value: number) => (retryAfterRandom.next = () => value);
const original = retryAfterRandom.next;
afterEach(() => (retryAfterRandom.next = original));

describe('Retry-After of a 503 is spread over [s, 2s] whole seconds', () => {
  it('the whole fleet is not told the same second: Redis unreachable (1 s), over its memory budget (5 s)', () => {
    pin(0);
    expect(answer((r) => r.error('UNAVAILABLE', 'queue unreachable', 1))['retry-after']).toBe('1');
    expect(answer((r) => r.error('UNAVAILABLE', 'queue is over its memory budget', 5))['retry-after']).toBe('5');
    pin(0.5);
    expect(answer((r) => r.error('UNAVAILABLE', 'queue unreachable', 1))['retry-after']).toBe('2');
    expect(answer((r) => r.error('UNAVAILABLE', 'queue is over its memory budget', 5))['retry-after']).toBe('8');
    pin(0.999_999);
    expect(answer((r) => r.error('UNAVAILABLE', 'queue unreachable', 1))['retry-after']).toBe('2');
    expect(answer((r) => r.error('UNAVAILABLE', 'queue is over its memory budget', 5))['retry-after']).toBe('10');
    expect(answer((r) => r.error('UNAVAILABLE', 'secret cannot be decrypted', 60))['retry-after']).toBe('120');
  });

  it('a 429 (one collector’s own limit) keeps its exact wait; no Retry-After stays none', () => {
    pin(0.999_999);
    expect(answer((r) => r.error('RATE_LIMITED', 'too many requests from this collector', 3))['retry-after']).toBe('3');
    expect(answer((r) => r.error('UNAVAILABLE', 'no wait given'))['retry-after']).toBeUndefined();
  });
});
