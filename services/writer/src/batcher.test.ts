import { describe, expect, it } from 'vitest';
import { createLogger } from '@pga/logger';
import { createBatcher, EveryonesFailure, isEveryones } from './batcher';
import { connectFailure } from './classify-error';
import { PoisonPushError, type PreparedPush } from './prepare-push';
import { preparedTestPush } from './test-push';
import type { StoreBatchResult } from './store-batch';

const push = preparedTestPush;

const pgError = (code: string, message: string) => Object.assign(new Error(message), { code });
/** A job failed for everyone's reason `cause` (the push worker puts it back without using up an attempt). */
const everyones = (reason: unknown, cause: unknown) => reason instanceof EveryonesFailure && reason.cause === cause;

/**
 * The batcher's decisions when a batch fails (the stores themselves are covered against a real
 * PostgreSQL in test/writer): here `store` stands in for storeBatch, to make one push poison and
 * another fail transiently in the same job, which a real server will not do on cue.
 */
function batcherWith(failures: Map<string, Error> | ((pushes: readonly PreparedPush[]) => Error | undefined)) {
  const stored: string[] = [];
  let calls = 0;
  const failure =
    typeof failures === 'function'
      ? failures
      : (pushes: readonly PreparedPush[]) => pushes.map((p) => failures.get(p.pushId)).find(Boolean);
  const batcher = createBatcher({
    maxRows: 1000,
    maxBytes: 1 << 20,
    windowMs: 1,
    parallelism: 1,
    retryMaxMs: 50,
    store: async (pushes) => {
      calls++;
      const err = failure(pushes);
      if (err) throw err;
      stored.push(...pushes.map((p) => p.pushId));
      return { storedIds: pushes.map((p) => p.pushId), expiredIds: [] } as unknown as StoreBatchResult;
    },
    afterCommit: async () => undefined,
    onRetry: () => undefined,
    logger: createLogger({ name: 'batcher-test', level: 'silent', pretty: false }),
  });
  return { batcher, stored, calls: () => calls };
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
    // PostgreSQL away past the retries: everyone's failure, so the job is put back, not failed.
    expect(everyones(err, transient)).toBe(true);
    expect(stored).toEqual([good.pushId]);
  });
});

describe('batcher: a batch that fails for other reasons than a bad push', () => {
  it("a server error for some rows only (a trigger refusing one collector's) fails only the job that has them, retryably; the others are stored", async () => {
    const [a, b, c, refused] = [push(), push(), push(), push()];
    const trigger = pgError('P0001', 'collector c8 is blocked');
    const { batcher, stored } = batcherWith(new Map([[refused.pushId, trigger]]));
    const outcomes = await Promise.allSettled([batcher.submit([a]), batcher.submit([b, refused]), batcher.submit([c])]);
    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    // Not poison: BullMQ tries the job again (b dedupes via the ledger), and it is a dead letter only if it still fails.
    expect((outcomes[1] as PromiseRejectedResult).reason).toBe(trigger);
    expect(stored.sort()).toEqual([a.pushId, b.pushId, c.pushId].sort());
  });

  it('the same server error for everything (a privilege revoked) fails every job after a few tries, not one try per push', async () => {
    const jobs = Array.from({ length: 20 }, () => [push(), push(), push(), push(), push()]);
    const revoked = pgError('42501', 'permission denied for table collector_metrics');
    const { batcher, stored, calls } = batcherWith(() => revoked);
    const outcomes = await Promise.allSettled(jobs.map((j) => batcher.submit(j)));
    // Every job, those tried alone before it was clear too, fails as everyone's: put back, no attempt used up.
    expect(outcomes.every((o) => o.status === 'rejected' && everyones(o.reason, revoked))).toBe(true);
    expect(stored).toEqual([]);
    // The batch, then jobs and pushes alone until three collectors' failed: 100 pushes are not each tried.
    expect(calls()).toBeLessThanOrEqual(7);
  });

  it("a refused log-in (before any push was sent) is everyone's with one collector: the batch is tried once, every job put back", async () => {
    const collectorId = push().collectorId;
    const jobs = Array.from({ length: 10 }, () => [
      { ...push(), collectorId },
      { ...push(), collectorId },
    ]);
    let refused: unknown;
    const { batcher, stored, calls } = batcherWith(
      () => (refused = connectFailure(pgError('28P01', 'password authentication failed for user "pga_writer"'))) as Error,
    );
    const outcomes = await Promise.allSettled(jobs.map((j) => batcher.submit(j)));
    expect(outcomes.every((o) => o.status === 'rejected' && everyones(o.reason, refused))).toBe(true);
    expect(stored).toEqual([]);
    expect(calls()).toBe(1);
    // The same SQLSTATE from a statement (not the log-in) still needs three collectors' pushes.
    const late = pgError('28P01', 'password authentication failed');
    const one = batcherWith(() => late);
    const settled = await Promise.allSettled(jobs.map((j) => one.batcher.submit(j.map((p) => ({ ...p })))));
    expect(settled.every((o) => o.status === 'rejected' && o.reason === late)).toBe(true);
  });

  it("one collector's failures coming first (its jobs retried together) are not taken for everyone's", async () => {
    const blocked = push().collectorId;
    const refusedJobs = Array.from({ length: 6 }, () => [{ ...push(), collectorId: blocked }]);
    const healthy = Array.from({ length: 4 }, () => [push()]);
    const trigger = pgError('P0001', 'collector is blocked');
    const { batcher, stored } = batcherWith((pushes) => (pushes.some((p) => p.collectorId === blocked) ? trigger : undefined));
    const outcomes = await Promise.allSettled([...refusedJobs, ...healthy].map((j) => batcher.submit(j)));
    expect(outcomes.map((o) => o.status)).toEqual([...Array(6).fill('rejected'), ...Array(4).fill('fulfilled')]);
    expect(stored.sort()).toEqual(
      healthy
        .flat()
        .map((p) => p.pushId)
        .sort(),
    );
  });

  it('PostgreSQL going away while a batch is isolated fails the remaining jobs at once (retryably), not after one wait each', async () => {
    const jobs = Array.from({ length: 10 }, () => [push(), push()]);
    const refused = pgError('P0001', 'collector is blocked');
    const away = pgError('57P01', 'terminating connection due to administrator command');
    let first = true;
    const { batcher, calls } = batcherWith(() => {
      if (!first) return away;
      first = false;
      return refused;
    });
    const outcomes = await Promise.allSettled(jobs.map((j) => batcher.submit(j)));
    expect(outcomes.every((o) => o.status === 'rejected' && everyones(o.reason, away))).toBe(true);
    // The batch, then the first job alone (its retries fit no backoff within retryMaxMs): the others are not tried.
    expect(calls()).toBe(2);
  });

  it("what one push or one collector can cause is not everyone's: its job fails as before (an attempt used up), the other jobs of its batch are stored", async () => {
    // One push over the statement timeout (its retries ran out), past the batch deadline, or out of memory.
    const deadline = Object.assign(pgError('ETIMEDOUT', 'batch transaction not done within 120000 ms'), {
      name: 'BatchDeadlineError',
    });
    for (const err of [
      pgError('57014', 'canceling statement due to statement timeout'),
      deadline,
      pgError('53200', 'out of memory'),
    ]) {
      const [slow, a, b] = [push(), push(), push()];
      const { batcher, stored } = batcherWith((pushes) => (pushes.some((p) => p.pushId === slow.pushId) ? err : undefined));
      const outcomes = await Promise.allSettled([batcher.submit([a]), batcher.submit([slow]), batcher.submit([b])]);
      expect(
        outcomes.map((o) => o.status),
        String(err),
      ).toEqual(['fulfilled', 'rejected', 'fulfilled']);
      expect((outcomes[1] as PromiseRejectedResult).reason, String(err)).toBe(err);
      expect(stored.sort()).toEqual([a.pushId, b.pushId].sort());
    }
    // A trigger refusing three collectors, whose jobs came back together: nothing stored, three
    // collectors' pushes failed alike — but P0001 is about rows, not about reaching PostgreSQL.
    const blocked = [push(), push(), push()];
    const ids = new Set(blocked.map((p) => p.pushId));
    const trigger = pgError('P0001', 'collector is blocked');
    const { batcher } = batcherWith((pushes) => (pushes.some((p) => ids.has(p.pushId)) ? trigger : undefined));
    const outcomes = await Promise.allSettled(blocked.map((p) => batcher.submit([p])));
    expect(outcomes.every((o) => o.status === 'rejected' && o.reason === trigger)).toBe(true);
  });

  it("tells everyone's failures (PostgreSQL out of reach or refusing the writer) from one push's", () => {
    const everyones = [
      pgError('ECONNREFUSED', 'connect ECONNREFUSED 10.0.0.5:5432'),
      pgError('EAI_AGAIN', 'getaddrinfo EAI_AGAIN db.internal'),
      pgError('CERT_HAS_EXPIRED', 'certificate has expired'),
      new Error('Connection terminated unexpectedly'),
      new Error('timeout exceeded when trying to connect'),
      ...['08006', '28P01', '57P01', '57P03', '53300', '53100', '55P03', '25006', '3D000', '42501', '42P01'].map((c) =>
        pgError(c, c),
      ),
    ];
    const own = [
      Object.assign(pgError('ETIMEDOUT', 'batch transaction not done within 120000 ms'), { name: 'BatchDeadlineError' }),
      new TypeError('x is undefined'),
      ...['57014', '53200', '40001', '40P01', 'P0001', '22P02', '23505'].map((c) => pgError(c, c)),
    ];
    for (const err of everyones) expect(isEveryones(err), String(err)).toBe(true);
    for (const err of own) expect(isEveryones(err), String(err)).toBe(false);
  });

  it('a batch over the statement timeout is stored in halves, down to single pushes, and every job resolves', async () => {
    const jobs = Array.from({ length: 9 }, () => [push(), push(), push()]);
    const timeout = pgError('57014', 'canceling statement due to statement timeout');
    // Only two pushes at a time get through before the timeout.
    const { batcher, stored } = batcherWith((pushes) => (pushes.length > 2 ? timeout : undefined));
    const outcomes = await Promise.all(jobs.map((j) => batcher.submit(j)));
    expect(outcomes.every((o) => o.stored === 3)).toBe(true);
    expect(stored.sort()).toEqual(
      jobs
        .flat()
        .map((p) => p.pushId)
        .sort(),
    );
  });
});
