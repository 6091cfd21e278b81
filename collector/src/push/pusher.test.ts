import { describe, expect, it } from 'vitest';
import type { Logger } from '@pga/logger';
import type { CentralClient, CentralResult } from '../central/central-client';
import type { Spool, SpoolEntry } from '../spool/spool';
import { createPusher } from './pusher';

/** One snapshot that never leaves: every push is answered `answer`. */
function refusedPusher(answer: CentralResult<never>, random: () => number, maxRetryAfterMs?: number) {
  const entry: SpoolEntry = { name: '000000000001-x.json.gz', pushId: '00000000-0000-4000-8000-000000000001', bytes: 1 };
  const spool = { oldest: () => entry, read: async () => Buffer.from('{}') } as unknown as Spool;
  const central = { push: async () => answer } as unknown as CentralClient;
  const waits: number[] = [];
  const logger = {
    warn: (fields: { retry_in_ms?: number }) => fields.retry_in_ms !== undefined && waits.push(fields.retry_in_ms),
    debug: () => undefined,
    info: () => undefined,
    error: () => undefined,
  } as unknown as Logger;
  const pusher = createPusher({
    spool,
    central,
    refreshToken: async () => false,
    logger,
    maxPerSecond: 5,
    backoff: { baseMs: 1000, maxMs: 60_000 },
    collectorId: () => '00000000-0000-4000-8000-000000000009',
    random,
    ...(maxRetryAfterMs ? { maxRetryAfterMs } : {}),
  });
  return { pusher, waits };
}

const unavailable = (retryAfterMs: number): CentralResult<never> => ({
  ok: false,
  status: 503,
  code: 'UNAVAILABLE',
  message: 'queue unreachable',
  retryAfterMs,
});

describe('pusher: waits after 429/503 with Retry-After', () => {
  it('never waits less than Retry-After, adds a random share of a growing step (a fleet does not retry in step)', async () => {
    const { pusher, waits } = refusedPusher(unavailable(1000), () => 0.5);
    for (let i = 0; i < 5; i++) expect(await pusher.drainOnce()).toMatch(/^push: 503 UNAVAILABLE/);
    // Retry-After 1 s + half of 1, 2, 4, 8, 16 s: with the old exact wait, 1000 ms every time.
    expect(waits).toEqual([1500, 2000, 3000, 5000, 9000]);
    // … then of 30 s at most, however long the outage (a 64 s step left some 2 min behind).
    for (let i = 0; i < 3; i++) await pusher.drainOnce();
    expect(waits.slice(5)).toEqual([16_000, 16_000, 16_000]);
  });

  it('two collectors told the same Retry-After wait differently; none earlier than told', async () => {
    const early = refusedPusher(unavailable(5000), () => 0);
    const late = refusedPusher(unavailable(5000), () => 0.999);
    await early.pusher.drainOnce();
    await late.pusher.drainOnce();
    expect(early.waits).toEqual([5000]);
    expect(late.waits).toEqual([5999]);
  });

  it('429 too; the jitter step stops at 30 s (a long outage leaves no collector minutes behind), Retry-After at maxRetryAfterMs', async () => {
    const limited: CentralResult<never> = {
      ok: false,
      status: 429,
      code: 'RATE_LIMITED',
      message: 'slow',
      retryAfterMs: 3_600_000,
    };
    const { pusher, waits } = refusedPusher(limited, () => 1, 600_000);
    for (let i = 0; i < 12; i++) await pusher.drainOnce();
    expect(waits[0]).toBe(601_000);
    expect(waits.at(-1)).toBe(630_000);
  });
});
