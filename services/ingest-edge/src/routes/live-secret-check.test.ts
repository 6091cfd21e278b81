import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { sha256Hex } from '@pga/crypto';
import type { Pool } from '@pga/db';
import { createLiveSecretCheck } from './enroll';

/**
 * A pool whose live enrollment secrets are `live` as of each read's start (its snapshot), answering
 * after `answerMs` (or never, while `hang`), counting the reads and when they started.
 */
function pool(live: string[], answerMs = 5) {
  const counter = { reads: 0, startedAt: [] as number[], hang: false };
  const p = {
    query: () => {
      counter.reads++;
      counter.startedAt.push(Date.now());
      const rows = live.map((s) => ({ secret_hash: sha256Hex(s) }));
      if (counter.hang) return new Promise(() => undefined);
      return new Promise((resolve) => setTimeout(resolve, answerMs, { rows }));
    },
  } as unknown as Pool;
  return { p, counter, live };
}

/** `promise`'s outcome and how long (fake time) it took, advancing the clock until it settles. */
async function settle<T>(promise: Promise<T>, maxMs = 60_000): Promise<{ value: T; ms: number }> {
  const start = Date.now();
  let done = false;
  void promise.then(
    () => (done = true),
    () => (done = true),
  );
  await vi.advanceTimersByTimeAsync(0);
  for (let ms = 0; !done && ms < maxMs; ms += 5) await vi.advanceTimersByTimeAsync(5);
  return { value: await promise, ms: Date.now() - start };
}

describe('createLiveSecretCheck (an address past its failed-enrollment limit)', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('answers a flood of guesses from one read per second, shared by the guesses waiting on it', async () => {
    const { p, counter } = pool(['good']);
    const isLive = createLiveSecretCheck(p, { maxAgeMs: 5_000, missRereadMs: 1_000 });
    const guesses = (n: number) => Promise.all(Array.from({ length: n }, (_, i) => isLive(`wrong-${i}`)));
    // 1,000 wrong guesses at once: one read (review 29: one each).
    expect((await settle(guesses(1000))).value.every((v) => !v)).toBe(true);
    expect(counter.reads).toBe(1);
    // A live secret is answered from it, without a read.
    expect((await settle(isLive('good'))).value).toBe(true);
    expect(counter.reads).toBe(1);
    // 1,000 more within the second: they wait for the one read a second later, together.
    const second = await settle(guesses(1000));
    expect(second.value.some(Boolean)).toBe(false);
    expect(counter.reads).toBe(2);
    expect(counter.startedAt[1]! - counter.startedAt[0]!).toBe(1_000);
    // A guess every 50 ms for 10 s: still one read a second.
    const flood: Promise<boolean>[] = [];
    for (let i = 0; i < 200; i++) {
      flood.push(isLive(`flood-${i}`));
      await vi.advanceTimersByTimeAsync(50);
    }
    expect((await settle(Promise.all(flood))).value.some(Boolean)).toBe(false);
    const gaps = counter.startedAt.slice(1).map((at, i) => at - counter.startedAt[i]!);
    expect(Math.min(...gaps)).toBeGreaterThanOrEqual(1_000);
    expect(counter.reads).toBeLessThanOrEqual(2 + 11);
  });

  it('a secret created just after a read passes once the next read (1 s after the last) sees it: not refused with 429', async () => {
    const { p, counter, live } = pool([]);
    const isLive = createLiveSecretCheck(p, { maxAgeMs: 5_000, missRereadMs: 1_000 });
    expect((await settle(isLive('guess'))).value).toBe(false); // the address's first refusal: one read
    await vi.advanceTimersByTimeAsync(300);
    live.push('fresh'); // an admin creates a secret 0.3 s later…
    const fresh = await settle(isLive('fresh'));
    expect(fresh.value).toBe(true); // …and it passes, after the read due 1 s after the last
    expect(fresh.ms).toBeLessThanOrEqual(1_000);
    expect(counter.reads).toBe(2);
    // Known now: at once, no read.
    expect((await settle(isLive('fresh'))).ms).toBe(0);
    expect(counter.reads).toBe(2);
    // Once a second has passed, a miss reads at once.
    await vi.advanceTimersByTimeAsync(2_000);
    live.push('later');
    expect(await settle(isLive('later'))).toEqual({ value: true, ms: 5 });
    expect(counter.reads).toBe(3);
  });

  it('a secret used while a read that started before its commit is under way waits for the next read, not that one', async () => {
    const { p, counter, live } = pool([], 200);
    const isLive = createLiveSecretCheck(p, { maxAgeMs: 5_000, missRereadMs: 1_000 });
    const first = isLive('guess'); // a read starts (its snapshot without 'fresh')…
    await vi.advanceTimersByTimeAsync(50);
    live.push('fresh'); // …the admin commits…
    const fresh = settle(isLive('fresh')); // …and the collector enrolls while the read is under way
    expect((await settle(first)).value).toBe(false);
    const { value, ms } = await fresh;
    expect(value).toBe(true);
    expect(ms).toBeLessThanOrEqual(950 + 200);
    expect(counter.reads).toBe(2);
  });

  it('sees a secret revoked since at the next read, and a known one answers from the hashes until they are 5 s old', async () => {
    const { p, counter, live } = pool(['old']);
    const isLive = createLiveSecretCheck(p, { maxAgeMs: 5_000, missRereadMs: 1_000 });
    expect((await settle(isLive('old'))).value).toBe(true);
    live.splice(0); // revoked
    expect((await settle(isLive('old'))).value).toBe(true); // from the hashes (the claim refuses it)
    expect(counter.reads).toBe(1);
    await vi.advanceTimersByTimeAsync(5_000);
    expect((await settle(isLive('old'))).value).toBe(false);
    expect(counter.reads).toBe(2);
  });

  it('does not hang: a read that does not answer is given up after readTimeoutMs (the secret counts as not live)', async () => {
    const { p, counter, live } = pool([]);
    const isLive = createLiveSecretCheck(p, { maxAgeMs: 5_000, missRereadMs: 1_000, readTimeoutMs: 3_000 });
    expect((await settle(isLive('guess'))).value).toBe(false);
    counter.hang = true;
    live.push('fresh');
    const hung = await settle(isLive('fresh'));
    expect(hung).toEqual({ value: false, ms: 1_000 - 5 + 3_000 });
    // The next read is not held up by it, and its answer is kept.
    counter.hang = false;
    await vi.advanceTimersByTimeAsync(1_000);
    expect((await settle(isLive('fresh'))).value).toBe(true);
    expect(counter.reads).toBe(3);
  });

  it('a failed read fails the requests waiting on it (the route answers 503), and the next one reads again', async () => {
    const live: string[] = ['good'];
    let fail = true;
    const p = {
      query: async () => {
        if (fail) throw Object.assign(new Error('connection refused'), { code: 'ECONNREFUSED' });
        return { rows: live.map((s) => ({ secret_hash: sha256Hex(s) })) };
      },
    } as unknown as Pool;
    const isLive = createLiveSecretCheck(p, { missRereadMs: 1_000 });
    await expect(settle(isLive('good'))).rejects.toThrow('connection refused');
    fail = false;
    expect((await settle(isLive('good'))).value).toBe(true);
  });
});
