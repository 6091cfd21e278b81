import { describe, expect, it } from 'vitest';
import { sha256Hex } from '@pga/crypto';
import type { Pool } from '@pga/db';
import { createLiveSecretCheck } from './enroll';

/** A pool whose live enrollment secrets are `live`, counting the reads. */
function pool(live: string[]) {
  const counter = { reads: 0 };
  const p = {
    query: async () => {
      counter.reads++;
      await new Promise((r) => setTimeout(r, 5));
      return { rows: live.map((s) => ({ secret_hash: sha256Hex(s) })) };
    },
  } as unknown as Pool;
  return { p, counter, live };
}

describe('createLiveSecretCheck (an address past its failed-enrollment limit)', () => {
  it('answers a flood of guesses from one read per interval, shared by the guesses waiting on it', async () => {
    const { p, counter } = pool(['good']);
    let t = 0;
    const isLive = createLiveSecretCheck(p, { maxAgeMs: 5_000, now: () => t });
    // 1,000 wrong guesses at once, then 1,000 more within the interval: one read (review 29: one each).
    expect((await Promise.all(Array.from({ length: 1000 }, (_, i) => isLive(`wrong-${i}`)))).every((v) => !v)).toBe(true);
    for (let i = 0; i < 1000; i++) expect(await isLive(`wrong-${i}`)).toBe(false);
    expect(await isLive('good')).toBe(true);
    expect(counter.reads).toBe(1);
    t += 5_000;
    expect(await isLive('good')).toBe(true);
    expect(counter.reads).toBe(2);
  });

  it('sees a secret created (or revoked) since at the next read', async () => {
    const { p, live } = pool([]);
    let t = 0;
    const isLive = createLiveSecretCheck(p, { maxAgeMs: 5_000, now: () => t });
    expect(await isLive('new')).toBe(false);
    live.push('new');
    expect(await isLive('new')).toBe(false);
    t += 5_001;
    expect(await isLive('new')).toBe(true);
  });

  it('reads again for a secret it does not know once 1 s has passed since the last read: a secret just created passes', async () => {
    const { p, counter, live } = pool([]);
    let t = 0;
    const isLive = createLiveSecretCheck(p, { maxAgeMs: 5_000, missRereadMs: 1_000, now: () => t });
    expect(await isLive('guess')).toBe(false); // the address's first refusal: one read
    expect(counter.reads).toBe(1);
    t += 1_000;
    live.push('fresh'); // an admin creates a secret 1 s later…
    expect(await isLive('fresh')).toBe(true); // …and it passes at once, not 4 s later
    expect(counter.reads).toBe(2);
    // Still bounded: a flood of misses costs one read per second, shared by the guesses waiting on it.
    for (let second = 0; second < 3; second++) {
      t += 1_000;
      expect((await Promise.all(Array.from({ length: 500 }, (_, i) => isLive(`wrong-${i}`)))).some(Boolean)).toBe(false);
      for (let i = 0; i < 500; i++) expect(await isLive(`wrong-${i}`)).toBe(false);
      t += 999;
      expect(await isLive('wrong-again')).toBe(false);
    }
    expect(counter.reads).toBe(5);
  });
});
