import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { randomUUID } from 'node:crypto';
import { Queue, Worker, UnrecoverableError } from 'bullmq';
import { createHarness, type Harness } from './harness';
import { expectRejected } from './fixtures';

describe('deadLetters', () => {
  let h: Harness;
  let queue: Queue;
  beforeAll(async () => {
    h = await createHarness();
    const { keys } = h.service.deps;
    const connection = { url: process.env.PGA_TEST_REDIS_URL!, maxRetriesPerRequest: null };
    queue = new Queue(keys.pushQueue, { connection, prefix: keys.bullPrefix });
    const push = (body: string) => ({
      push_id: randomUUID(),
      collector_id: randomUUID(),
      received_at: new Date().toISOString(),
      checksum: 'a'.repeat(64),
      body,
    });
    await queue.add('push', { v: 1, pushes: [push('{"poison":'), push('{"ok":1}')] });
    await queue.add('push', { v: 1, pushes: [push('{}')] });
    // stands in for the writer: fails every job as poison, then stops
    const worker = new Worker(
      keys.pushQueue,
      async () => {
        throw new UnrecoverableError('invalid JSON in push');
      },
      { connection, prefix: keys.bullPrefix },
    );
    for (let i = 0; i < 200 && (await queue.getFailedCount()) < 2; i++) await new Promise((r) => setTimeout(r, 50));
    await worker.close();
  });
  afterAll(async () => {
    await queue?.obliterate({ force: true }).catch(() => undefined);
    await queue?.close();
    await h?.[Symbol.asyncDispose]();
  });

  it('lists failed push jobs without their bodies and retries one or all, audited', async () => {
    const listed = await h.caller(h.viewer).deadLetters.list();
    expect(listed.total).toBe(2);
    const big = listed.items.find((i) => i.pushes === 2)!;
    expect(big).toMatchObject({
      failed_reason: 'invalid JSON in push',
      pushes: 2,
      bytes: '{"poison":'.length + '{"ok":1}'.length,
    });
    expect(JSON.stringify(listed)).not.toContain('poison');
    await expectRejected(h.caller(h.viewer).deadLetters.retry({ job_id: big.id }), 'FORBIDDEN');
    await expectRejected(h.caller(h.admin).deadLetters.retry({ job_id: 'nope' }), 'NOT_FOUND');
    expect(await h.caller(h.admin).deadLetters.retry({ job_id: big.id })).toEqual({ retried: 1 });
    expect(await queue.getFailedCount()).toBe(1);
    expect(await queue.getWaitingCount()).toBe(1);
    const other = (await h.caller(h.viewer).deadLetters.list()).items.find((i) => i.id !== big.id)!;
    const all = await h.caller(h.admin).deadLetters.retry({ all: true });
    expect(all).toEqual({ retried: 1, remaining: 0, cutoff: expect.any(Number) });
    expect(await queue.getFailedCount()).toBe(0);
    expect(await queue.getWaitingCount()).toBe(2);
    const { rows } = await h.service.deps.pool.query(
      "SELECT entity_id, details FROM collector_audit_log WHERE action = 'dead_letter.retried' ORDER BY id",
    );
    expect(rows).toEqual([
      { entity_id: big.id, details: { retried: 1, all: false } },
      // Which jobs "all" moved: the audit row says, not only how many.
      { entity_id: null, details: { retried: 1, all: true, remaining: 0, cutoff: all.cutoff, job_ids: [other.id] } },
    ]);
  });

  it('a retried job starts its attempts afresh; two retries of one job at once move it once (the other: NOT_FOUND)', async () => {
    const { keys } = h.service.deps;
    const connection = { url: process.env.PGA_TEST_REDIS_URL!, maxRetriesPerRequest: null };
    const job = await queue.add('push', { v: 1, pushes: [] }, { attempts: 2 });
    // Stands in for a writer meeting an error no retry fixes (a missing table): both attempts fail.
    const worker = new Worker(
      keys.pushQueue,
      async () => {
        throw new Error('relation "ingest_ledger" does not exist');
      },
      { connection, prefix: keys.bullPrefix },
    );
    for (let i = 0; i < 200 && !(await (await queue.getJob(job.id!))?.isFailed()); i++)
      await new Promise((r) => setTimeout(r, 50));
    await worker.close();
    expect((await queue.getJob(job.id!))?.attemptsMade).toBe(2);

    const both = await Promise.allSettled([
      h.caller(h.admin).deadLetters.retry({ job_id: job.id! }),
      h.caller(h.admin).deadLetters.retry({ job_id: job.id! }),
    ]);
    expect(both.filter((r) => r.status === 'fulfilled').map((r) => (r as PromiseFulfilledResult<unknown>).value)).toEqual([
      { retried: 1 },
    ]);
    const refused = both.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect((refused.reason as { code?: string }).code).toBe('NOT_FOUND');
    const again = await queue.getJob(job.id!);
    expect([await again?.getState(), again?.attemptsMade]).toEqual(['waiting', 0]);
    await again?.remove();
  });

  it('retries "all" at most `limit` (default 1,000) jobs a call and says how many remain; `cutoff` goes on; a job failing again is left (authzrev F7)', async () => {
    const { keys } = h.service.deps;
    const connection = { url: process.env.PGA_TEST_REDIS_URL!, maxRetriesPerRequest: null };
    const failAll = async (want: number) => {
      const worker = new Worker(
        keys.pushQueue,
        async () => {
          throw new UnrecoverableError('invalid JSON in push');
        },
        { connection, prefix: keys.bullPrefix, concurrency: 100 },
      );
      for (let i = 0; i < 600 && (await queue.getFailedCount()) < want; i++) await new Promise((r) => setTimeout(r, 50));
      await worker.close();
      expect(await queue.getFailedCount()).toBe(want);
    };
    // None to start with (the tests above leave failed jobs: the one above failed the two put back).
    await queue.drain();
    await queue.clean(0, 0, 'failed');
    expect([await queue.getFailedCount(), await queue.count()]).toEqual([0, 0]);
    await queue.addBulk(Array.from({ length: 1050 }, () => ({ name: 'push', data: { v: 1, pushes: [] } })));
    await failAll(1050);
    const admin = h.caller(h.admin);

    // One call moves 1,000 (pipelined, not one round trip each) and says 50 remain.
    const first = await admin.deadLetters.retry({ all: true });
    expect(first).toEqual({ retried: 1000, remaining: 50, cutoff: expect.any(Number) });
    expect(await queue.getWaitingCount()).toBe(1000);
    // The 1,000 fail again at once (poison): going on with the first call's cutoff moves only the 50.
    await failAll(1050);
    const rest = await admin.deadLetters.retry({ all: true, cutoff: first.cutoff! });
    expect(rest).toEqual({ retried: 50, remaining: 0, cutoff: first.cutoff });
    expect(await queue.getFailedCount()).toBe(1000);
    // A new "all" takes the 1,000, `limit` at a time.
    const next = await admin.deadLetters.retry({ all: true, limit: 10 });
    expect(next).toMatchObject({ retried: 10, remaining: 990 });
    expect(next.cutoff).toBeGreaterThan(first.cutoff!);
    await expectRejected(admin.deadLetters.retry({ all: true, limit: 1001 }), 'BAD_REQUEST', 'limit');

    // One audit row a call, with its count, what remains and the ids it moved.
    const { rows } = await h.service.deps.pool.query(
      `SELECT details FROM collector_audit_log WHERE action = 'dead_letter.retried' AND (details->>'retried')::int >= 10
        ORDER BY id`,
    );
    expect(rows.map((r) => [r.details.retried, r.details.remaining, r.details.job_ids.length])).toEqual([
      [1000, 50, 1000],
      [50, 0, 50],
      [10, 990, 10],
    ]);
    await queue.drain();
  });
});
