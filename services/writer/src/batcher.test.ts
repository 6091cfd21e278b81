import { describe, expect, it } from 'vitest';
import { createLogger } from '@pga/logger';
import { createBatcher } from './batcher';
import { PoisonPushError } from './prepare-push';
import { preparedTestPush } from './test-push';
import type { StoreBatchResult } from './store-batch';

const push = preparedTestPush;

const pgError = (code: string, message: string) => Object.assign(new Error(message), { code });

/**
 * The batcher's decisions when a batch fails (the stores themselves are covered against a real
 * PostgreSQL in test/writer): here `store` stands in for storeBatch, to make one push poison and
 * another fail transiently in the same job, which a real server will not do on cue.
 */
function batcherWith(failures: Map<string, Error>) {
  const stored: string[] = [];
  const batcher = createBatcher({
    maxRows: 1000,
    maxBytes: 1 << 20,
    windowMs: 1,
    parallelism: 1,
    retryMaxMs: 50,
    store: async (pushes) => {
      for (const p of pushes) {
        const err = failures.get(p.pushId);
        if (err) throw err;
      }
      stored.push(...pushes.map((p) => p.pushId));
      return { storedIds: pushes.map((p) => p.pushId), expiredIds: [] } as unknown as StoreBatchResult;
    },
    afterCommit: async () => undefined,
    onRetry: () => undefined,
    logger: createLogger({ name: 'batcher-test', level: 'silent', pretty: false }),
  });
  return { batcher, stored };
}

describe('batcher: a job with a bad push', () => {
  it('fails as poison when its only failures are poison, after storing the good pushes', async () => {
    const [good, bad] = [push(), push()];
    const { batcher, stored } = batcherWith(new Map([[bad.pushId, pgError('22P05', 'unsupported Unicode escape')]]));
    const err = await batcher.submit([good, bad]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PoisonPushError);
    expect((err as Error).message).toContain(bad.pushId);
    expect(stored).toEqual([good.pushId]);
  });

  it('fails retryably, not as poison, when another push failed transiently (it must not end up only in a dead letter)', async () => {
    const [good, bad, flaky] = [push(), push(), push()];
    const transient = pgError('57P01', 'terminating connection due to administrator command');
    const { batcher, stored } = batcherWith(
      new Map<string, Error>([
        [bad.pushId, pgError('22P05', 'unsupported Unicode escape')],
        [flaky.pushId, transient],
      ]),
    );
    const err = await batcher.submit([good, bad, flaky]).catch((e: unknown) => e);
    expect(err).toBe(transient);
    expect(stored).toEqual([good.pushId]);
  });
});
