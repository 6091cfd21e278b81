import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { PushItem, PushJob } from '@pga/contracts';
import { createPool, type Pool } from '@pga/db';
import { redisKeys } from '@pga/redis-keys';
import { createTestDatabase, testEnv, uniquePrefix, type TestDatabase } from '../helpers';
import { spawnWriter } from './child-writer';
import { fixture, insertCollector, pushItem, waitUntil, writerEnv } from './helpers';

const ELEMENTS = (JSON.parse(fixture) as { metrics: unknown[] }).metrics.length;

/**
 * Issue 5 §2: BullMQ delivers at least once. A writer SIGKILLed after COMMIT but before the ack (and
 * one killed in the middle of a COPY) must, after a restart, leave every push stored exactly once.
 */
describe('writer crash safety (SIGKILL)', () => {
  let db: TestDatabase;
  let pool: Pool;
  let redis: Redis;
  let queue: Queue<PushJob>;
  let prefix: string;

  beforeEach(async () => {
    db = await createTestDatabase();
    pool = createPool(db.url, { max: 2 });
    prefix = uniquePrefix('sigkill');
    const keys = redisKeys(prefix);
    redis = new Redis(testEnv.redisUrl, { maxRetriesPerRequest: null });
    queue = new Queue<PushJob>(keys.pushQueue, { connection: redis, prefix: keys.bullPrefix });
  });
  afterEach(async () => {
    await queue.close();
    await redis.quit();
    await pool.end();
    await db.drop();
  });

  // Short locks so the restarted writer picks the dead writer's jobs up within a second or two.
  const fastRedelivery = { WRITER_LOCK_DURATION_MS: '1500', WRITER_STALLED_INTERVAL_MS: '500', LOG_LEVEL: 'info' };

  async function enqueueJobs(collectorId: string, jobs: number, perJob: number): Promise<{ ids: string[]; pushes: PushItem[] }> {
    const pushes: PushItem[] = [];
    const ids: string[] = [];
    for (let j = 0; j < jobs; j++) {
      const batch = Array.from({ length: perJob }, () => pushItem(fixture, collectorId));
      pushes.push(...batch);
      const job = await queue.add('push', { v: 1, pushes: batch }, { attempts: 3, removeOnComplete: false });
      ids.push(job.id!);
    }
    return { ids, pushes };
  }

  const storedCounts = async (pushes: PushItem[]) => {
    const { rows } = await pool.query<{ push_id: string; n: number }>(
      'SELECT push_id, count(*)::int AS n FROM collector_metrics WHERE push_id = ANY($1) GROUP BY push_id',
      [pushes.map((p) => p.push_id)],
    );
    return new Map(rows.map((r) => [r.push_id, r.n]));
  };

  async function expectExactlyOnce(collectorId: string, ids: string[], pushes: PushItem[]) {
    await waitUntil(
      'every job completed',
      async () => (await Promise.all(ids.map((id) => queue.getJobState(id)))).every((s) => s === 'completed'),
      30_000,
      100,
    );
    const counts = await storedCounts(pushes);
    expect(counts.size).toBe(pushes.length);
    for (const p of pushes) expect(counts.get(p.push_id), p.push_id).toBe(ELEMENTS);
    const ledger = await pool.query('SELECT count(*)::int AS n FROM ingest_ledger WHERE push_id = ANY($1)', [
      pushes.map((p) => p.push_id),
    ]);
    expect(ledger.rows[0].n).toBe(pushes.length);
    // Collector counters were not double-counted either (same transaction as the rows).
    const c = await pool.query('SELECT success_count, metrics_collected FROM collectors WHERE id = $1', [collectorId]);
    expect(c.rows[0]).toEqual({ success_count: String(pushes.length), metrics_collected: String(pushes.length * ELEMENTS) });
    const rollup = await pool.query(
      'SELECT sum(row_count)::int AS n FROM collector_metrics_rollup_live WHERE collector_id = $1',
      [collectorId],
    );
    expect(rollup.rows[0].n).toBe(pushes.length * ELEMENTS);
  }

  it('killed between COMMIT and acknowledgement: redelivered jobs store nothing twice', async () => {
    const collectorId = await insertCollector(pool);
    const { ids, pushes } = await enqueueJobs(collectorId, 6, 5);

    const first = spawnWriter(await writerEnv(db.url, prefix, { ...fastRedelivery, WRITER_TEST_PAUSE_AFTER_COMMIT_MS: '60000' }));
    const paused = await first.waitForLog('test hook: committed, pausing before acknowledging');
    const committed = paused.pushes as string[];
    expect(committed.length).toBeGreaterThan(0);
    // The window is real: the rows are committed and visible, but their jobs are not acknowledged.
    const visible = await storedCounts(pushes.filter((p) => committed.includes(p.push_id)));
    expect(visible.size).toBe(committed.length);
    const states = await Promise.all(ids.map((id) => queue.getJobState(id)));
    expect(states).not.toContain('completed');
    expect((await first.kill('SIGKILL')).signal).toBe('SIGKILL');

    await using second = spawnWriter(await writerEnv(db.url, prefix, fastRedelivery));
    await expectExactlyOnce(collectorId, ids, pushes);
    // The redelivered jobs found their pushes in the ledger.
    const returns = await Promise.all(ids.map(async (id) => (await queue.getJob(id))!.returnvalue as { duplicates: number }));
    expect(returns.reduce((a, r) => a + r.duplicates, 0)).toBeGreaterThanOrEqual(committed.length);
    await second.kill('SIGTERM');
  });

  it('killed in the middle of a COPY: the open transaction leaves nothing, the restart stores everything once', async () => {
    const collectorId = await insertCollector(pool);
    const { ids, pushes } = await enqueueJobs(collectorId, 6, 5);

    const first = spawnWriter(await writerEnv(db.url, prefix, { ...fastRedelivery, WRITER_TEST_PAUSE_MID_COPY_MS: '60000' }));
    const paused = await first.waitForLog('test hook: pausing mid-COPY');
    const inCopy = paused.pushes as string[];
    expect(inCopy.length).toBeGreaterThan(0);
    // Half of the batch's rows have been sent; the server holds them in an open transaction.
    const { rows } = await pool.query(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'pga-writer' AND query LIKE 'COPY collector_metrics%'`,
    );
    expect(rows[0].n).toBeGreaterThan(0);
    expect((await storedCounts(pushes)).size).toBe(0);
    expect((await first.kill('SIGKILL')).signal).toBe('SIGKILL');

    await using second = spawnWriter(await writerEnv(db.url, prefix, fastRedelivery));
    await expectExactlyOnce(collectorId, ids, pushes);
    await second.kill('SIGTERM');
  });
});
