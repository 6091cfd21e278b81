import { randomUUID } from 'node:crypto';
import { Queue, UnrecoverableError, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redisKeys } from '@pga/redis-keys';
import { createTestDatabase, testEnv, uniquePrefix, type TestDatabase } from '../helpers';
import { fixture, pushItem, sha256, startWriterHarness, waitUntil, type WriterHarness } from './helpers';

/** What a writer from before 2026-12-07 (job versions 1 and 2 only) said of a version-3 job. */
const OLDER_WRITERS_REASON = 'not a PushJob: v: Invalid discriminator value. Expected 1 | 2';

describe('writer: dead letters an older writer could not read', () => {
  let db: TestDatabase;
  let h: WriterHarness | undefined;
  const prefix = uniquePrefix('upgrade');
  const keys = redisKeys(prefix);
  let redis: Redis;
  let queue: Queue;

  beforeAll(async () => {
    db = await createTestDatabase();
    redis = new Redis(testEnv.redisUrl, { maxRetriesPerRequest: null });
    queue = new Queue(keys.pushQueue, { connection: redis, prefix: keys.bullPrefix });
  });
  afterAll(async () => {
    await h?.close();
    await queue?.close();
    await redis?.quit();
    await db?.drop();
  });

  /** A v3 job as the edge writes it: the body in 1 MiB pieces of a hash named after the job. */
  const addLarge = async (body: string, withBody = true) => {
    const item = pushItem(body);
    const jobId = `large-${randomUUID()}`;
    const key = keys.pushBlob(jobId);
    const bytes = Buffer.from(body);
    const pieces = Math.ceil(bytes.length / (1024 * 1024));
    if (withBody) {
      for (let i = 0; i < pieces; i++) await redis.hset(key, String(i), bytes.subarray(i * 1024 * 1024, (i + 1) * 1024 * 1024));
      await redis.zadd(keys.pushBlobs, Date.now(), key);
    }
    const { body: _body, ...rest } = item;
    const data = { v: 3, replay_window_s: 600, pushes: [{ ...rest, body_ref: { key, bytes: bytes.length, pieces } }] };
    await queue.add('push', data, { jobId, attempts: 5, removeOnComplete: true });
    return { jobId, key, item };
  };

  it('an upgraded writer puts back the v3 jobs an older writer failed, stores them once, and leaves other dead letters alone', async () => {
    // ~1.6 MB: two pieces; the fixture's metrics many times over, 64-bit integers and all.
    const metrics = JSON.stringify((JSON.parse(fixture) as { metrics: unknown[] }).metrics).slice(1, -1);
    const big = `{"metrics":[${Array.from({ length: 600 }, () => metrics).join(',')}]}`;
    expect(big.length).toBeGreaterThan(1024 * 1024);
    const good = await addLarge(big);
    const bodyless = await addLarge('{"metrics":[]}', false);
    // A job no writer reads (a version from the future), failed the same way.
    const unknown = await queue.add('push', { v: 9, pushes: [] }, { jobId: `future-${randomUUID()}`, attempts: 5 });
    // An older writer fails all three at once, as a dead letter.
    const older = new Worker(
      keys.pushQueue,
      async () => {
        throw new UnrecoverableError(OLDER_WRITERS_REASON);
      },
      { connection: redis.duplicate(), prefix: keys.bullPrefix },
    );
    try {
      await waitUntil('the older writer failed them', async () => (await queue.getFailedCount()) === 3);
    } finally {
      await older.close();
    }
    expect((await queue.getJob(good.jobId))?.failedReason).toBe(OLDER_WRITERS_REASON);
    expect(await redis.exists(good.key)).toBe(1);

    // The upgraded writer (its scheduled sweep out of the way: the test runs it): the sweep puts back
    // the two v3 jobs (it reads them), not the v9 one.
    h = await startWriterHarness(db.url, {
      REDIS_KEY_PREFIX: prefix,
      WRITER_BATCH_WINDOW_MS: '30',
      WRITER_SWEEP_INTERVAL_MS: '3600000',
    });
    const sweep = async () => (await h!.writer.maintenance.runNow('sweep')) as { unreadRetried: number };
    expect((await sweep()).unreadRetried).toBe(2);
    await waitUntil('the large push stored', async () => (await queue.getJobState(good.jobId)) === 'unknown');
    const { rows } = await h.pool.query(
      'SELECT count(*)::int AS n, min(checksum) AS checksum FROM collector_metrics WHERE push_id = $1',
      [good.item.push_id],
    );
    expect(rows[0]).toEqual({ n: 600 * (JSON.parse(fixture) as { metrics: unknown[] }).metrics.length, checksum: sha256(big) });
    await waitUntil('its body deleted', async () => (await redis.exists(good.key)) === 0);
    // The one whose body is gone fails again, now for that reason; the v9 job keeps the older reason.
    await waitUntil('the bodiless job failed again', async () => (await queue.getJobState(bodyless.jobId)) === 'failed');
    expect((await queue.getJob(bodyless.jobId))?.failedReason).toContain('its body is gone from Redis');
    expect((await queue.getJob(unknown.id!))?.failedReason).toBe(OLDER_WRITERS_REASON);

    // Nothing more to put back: the next sweeps leave both dead letters alone.
    expect((await sweep()).unreadRetried).toBe(0);
    expect((await sweep()).unreadRetried).toBe(0);
    expect(await queue.getFailedCount()).toBe(2);
    const again = await h.pool.query('SELECT count(*)::int AS n FROM ingest_ledger WHERE push_id = $1', [good.item.push_id]);
    expect(again.rows[0].n).toBe(1);
  });
  it('finds such a dead letter scored before failures it has already read (another writer whose clock is behind)', async () => {
    const sweep = async () => ((await h!.writer.maintenance.runNow('sweep')) as { unreadRetried: number }).unreadRetried;
    /** A dead letter as a writer leaves it: the failed set is scored by the failing writer's clock. */
    const fail = async (id: string, data: unknown, reason: string, score: number) => {
      await redis.hset(
        queue.toKey(id),
        'name',
        'push',
        'data',
        JSON.stringify(data),
        'opts',
        '{}',
        'failedReason',
        reason,
        'finishedOn',
        String(score),
      );
      await redis.zadd(queue.toKey('failed'), score, id);
    };
    const t = Date.now();
    // Another dead letter, by a writer whose clock runs 200 ms ahead: read, left alone.
    await fail(`poison-${randomUUID()}`, { v: 2, pushes: [] }, 'push x: does not match its checksum', t + 200);
    expect(await sweep()).toBe(0);
    // Then an older writer (its clock right) fails a v3 job it could not read: scored before it.
    const { body: _body, ...rest } = pushItem('{"metrics":[]}');
    const key = keys.pushBlob(`large-${randomUUID()}`);
    const v3 = { v: 3, replay_window_s: 600, pushes: [{ ...rest, body_ref: { key, bytes: 14, pieces: 1 } }] };
    const id = `large-${randomUUID()}`;
    await fail(id, v3, OLDER_WRITERS_REASON, t + 50);
    expect(await sweep()).toBe(1);
    await waitUntil(
      'tried by this writer',
      async () => (await queue.getJob(id))?.failedReason?.includes('gone from Redis') === true,
    );
  });
});
