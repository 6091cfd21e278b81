import { spawn } from 'node:child_process';
import { Queue, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PushJob } from '@pga/contracts';
import { createPool } from '@pga/db';
import { createLogger } from '@pga/logger';
import { findExecutable, freePort, waitFor } from '@pga/local-stack';
import { redisKeys } from '@pga/redis-keys';
import { createWriter, readWriterConfig } from '@pga/writer';
import { capturingLogger, createTestDatabase, testEnv, uniquePrefix, type TestDatabase } from '../helpers';
import { spawnWriter } from './child-writer';
import { fixture, pushItem, startWriterHarness, waitUntil, writerEnv, type WriterHarness } from './helpers';

/**
 * A writer built but not started on a queue of its own: it consumes nothing, its gauges still read
 * the queue. `close` empties the queue and closes everything.
 */
async function idleWriter(dbUrl: string, name: string) {
  const prefix = uniquePrefix(name);
  const keys = redisKeys(prefix);
  const writer = createWriter({
    config: readWriterConfig(await writerEnv(dbUrl, prefix)),
    logger: createLogger({ name: 't', level: 'silent' }),
  });
  const redis = new Redis(testEnv.redisUrl, { maxRetriesPerRequest: null });
  const queue = new Queue<PushJob>(keys.pushQueue, { connection: redis, prefix: keys.bullPrefix });
  return {
    writer,
    keys,
    redis,
    queue,
    async close() {
      await queue.obliterate({ force: true });
      await queue.close();
      await redis.quit();
      await writer.pushWorker.close();
      await writer.maintenance.close();
      await writer.redis.quit();
      await writer.pool.end();
    },
  };
}

/** Until the writer's ledger insert waits on a lock (a test holds ingest_ledger). */
const waitingOnLedger = (h: WriterHarness) =>
  waitUntil('writer waiting on the lock', async () => {
    const r = await h.pool.query(
      `SELECT 1 FROM pg_stat_activity WHERE application_name = 'pga-writer' AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO ingest_ledger%'`,
    );
    return r.rows.length > 0;
  });

/** Takes a held job's keys away, as a failover to an empty replica does; resolves how many were there. */
const dropJobKeys = (h: WriterHarness, jobId: string) => {
  const jobKey = `${h.keys.bullPrefix}:${h.keys.pushQueue}:${jobId}`;
  return h.redis.del(jobKey, `${jobKey}:lock`);
};

describe('writer: operations', () => {
  let db: TestDatabase;

  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('answers /healthz, /readyz and /metrics with rows, bytes, batch and COPY histograms, lag, retries and dead letters', async () => {
    await using h = await startWriterHarness(db.url);
    expect(await (await fetch(`${h.url}/healthz`)).json()).toEqual({ status: 'ok' });
    const ready = await fetch(`${h.url}/readyz`);
    expect(ready.status).toBe(200);
    // Another method: 405 naming the ones allowed (RFC 9110 §15.5.6), as the edge answers.
    const post = await fetch(`${h.url}/healthz`, { method: 'POST' });
    expect([post.status, post.headers.get('allow'), ((await post.json()) as any).error.code]).toEqual([
      405,
      'GET, HEAD',
      'METHOD_NOT_ALLOWED',
    ]);
    await h.waitForJob(await h.enqueue([pushItem(fixture)]), 'completed');
    await h.writer.pushWorker.refreshGauges();
    const text = await (await fetch(`${h.url}/metrics`)).text();
    for (const name of [
      'writer_rows_written_total 13',
      'writer_bytes_written_total ',
      'writer_batch_rows_bucket',
      'writer_copy_duration_seconds_bucket',
      'writer_queue_lag_seconds ',
      'writer_retries_total 0',
      'writer_dead_letters_total 0',
      'writer_queue_dead_letter_jobs 0',
      'writer_process_cpu_user_seconds_total ',
      'writer_nodejs_eventloop_lag_p99_seconds ',
    ]) {
      expect(text, name).toContain(name);
    }
    expect((await fetch(`${h.url}/nope`)).status).toBe(404);
  });

  it('a fresh writer exports writer_maintenance_runs_total for every job and outcome, failed at 0 (an alert on the first failure needs the series before it)', async () => {
    await using h = await startWriterHarness(db.url);
    const text = await (await fetch(`${h.url}/metrics`)).text();
    for (const job of ['partitions', 'sweep', 'rollup']) {
      expect(text).toMatch(new RegExp(`^writer_maintenance_runs_total\\{task="${job}",outcome="failed"\\} 0$`, 'm'));
      expect(text).toMatch(new RegExp(`^writer_maintenance_runs_total\\{task="${job}",outcome="ok"\\} \\d+$`, 'm'));
    }
  });

  it('records COPY duration and batch rows only for batches that ran a COPY (not for a redelivery stored before)', async () => {
    await using h = await startWriterHarness(db.url);
    const metric = async (name: string) =>
      Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(await h.writer.metrics.registry.metrics())?.[1] ?? 'NaN');
    const items = [pushItem(fixture), pushItem(fixture)];
    await h.waitForJob(await h.enqueue(items), 'completed');
    const copies = await metric('writer_copy_duration_seconds_count');
    const batchRows = await metric('writer_batch_rows_count');
    expect(copies).toBeGreaterThanOrEqual(1);
    // The same pushes again (a dead letter retried): the ledger skips them, no COPY runs.
    await h.waitForJob(await h.enqueue(items), 'completed');
    expect(await metric('writer_pushes_duplicate_total')).toBe(2);
    expect(await metric('writer_copy_duration_seconds_count')).toBe(copies);
    expect(await metric('writer_batch_rows_count')).toBe(batchRows);
  });

  it('writer_batch_duration_seconds times the transaction, not the wait for a pool connection', async () => {
    await using h = await startWriterHarness(db.url, { WRITER_PG_POOL_SIZE: '2' });
    const metric = async (name: string) =>
      Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(await h.writer.metrics.registry.metrics())?.[1] ?? 'NaN');
    // Every connection of the writer's pool taken: the batch waits for one.
    const held = [await h.writer.pool.connect(), await h.writer.pool.connect()];
    let released = false;
    const release = () => {
      if (!released) for (const c of held) c.release();
      released = true;
    };
    try {
      const jobId = await h.enqueue([pushItem(fixture)]);
      await waitUntil('job taken', async () => (await h.queue.getJobState(jobId)) === 'active');
      await new Promise((r) => setTimeout(r, 2000));
      release();
      await h.waitForJob(jobId, 'completed');
    } finally {
      release();
    }
    expect(await metric('writer_batch_duration_seconds_count')).toBe(1);
    expect(await metric('writer_batch_duration_seconds_sum')).toBeLessThan(1);
  });

  it('reports queue lag of the oldest waiting push while no writer consumes', async () => {
    const idle = await idleWriter(db.url, 'lag');
    try {
      await idle.queue.add('push', { v: 1, pushes: [pushItem(fixture)] });
      await new Promise((r) => setTimeout(r, 1100));
      await idle.writer.pushWorker.refreshGauges();
      const text = await idle.writer.metrics.registry.metrics();
      expect(Number(/^writer_queue_lag_seconds (\S+)/m.exec(text)?.[1])).toBeGreaterThanOrEqual(1);
      expect(text).toMatch(/^writer_queue_waiting_jobs 1$/m);
    } finally {
      await idle.close();
    }
  });

  it('retries a batch on a transient PostgreSQL error (by SQLSTATE) and then stores it', async () => {
    await using h = await startWriterHarness(db.url);
    const blocker = await h.pool.connect();
    try {
      // Terminate the writer's backend while its COPY waits on a lock: 57P01 admin_shutdown (transient).
      await blocker.query('BEGIN');
      await blocker.query('LOCK TABLE ingest_ledger IN ACCESS EXCLUSIVE MODE');
      const jobId = await h.enqueue([pushItem(fixture)], { attempts: 1 });
      await waitUntil('writer waiting on the lock', async () => {
        const r = await h.pool.query(
          `SELECT pid FROM pg_stat_activity WHERE application_name = 'pga-writer' AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO ingest_ledger%'`,
        );
        if (r.rows.length === 0) return false;
        await h.pool.query('SELECT pg_terminate_backend($1)', [r.rows[0].pid]);
        return true;
      });
      await blocker.query('ROLLBACK');
      await h.waitForJob(jobId, 'completed');
      const text = await (await fetch(`${h.url}/metrics`)).text();
      expect(Number(/^writer_retries_total (\S+)/m.exec(text)?.[1])).toBeGreaterThanOrEqual(1);
    } finally {
      blocker.release();
    }
  });

  it('a job gone from Redis when it finishes (Redis emptied under it) is one warning line, and its pushes stay stored', async () => {
    const { logger, lines } = capturingLogger('writer');
    await using h = await startWriterHarness(db.url, {}, logger);
    const blocker = await h.pool.connect();
    try {
      // Hold the COPY on a lock, take the job's keys away (what a failover to an empty replica
      // does), then let it commit: BullMQ cannot mark it completed, nor failed after that.
      await blocker.query('BEGIN');
      await blocker.query('LOCK TABLE ingest_ledger IN ACCESS EXCLUSIVE MODE');
      const push = pushItem(fixture);
      const jobId = await h.enqueue([push], { attempts: 1 });
      await waitingOnLedger(h);
      expect(await dropJobKeys(h, jobId)).toBe(2);
      await blocker.query('COMMIT');
      const gone = () => lines.filter((l) => /was gone from Redis when it finished/.test(String(l.msg)));
      await waitUntil('the warning', async () => gone().length > 0);
      await new Promise((r) => setTimeout(r, 300)); // BullMQ's second report (marking it failed) comes after
      expect(gone()).toHaveLength(1);
      expect(gone()[0]).toMatchObject({ jobId });
      expect(lines.filter((l) => /push worker error/.test(String(l.msg)))).toEqual([]);
      const stored = await h.pool.query('SELECT count(*)::int AS n FROM collector_metrics WHERE push_id = $1', [push.push_id]);
      expect(stored.rows[0].n).toBeGreaterThan(0);
    } finally {
      blocker.release();
    }
  });

  it('many jobs gone from Redis when they finish (FLUSHALL under held jobs) are one warning and one summary, not two lines a job', async () => {
    const { logger, lines } = capturingLogger('writer');
    await using h = await startWriterHarness(db.url, {}, logger);
    const blocker = await h.pool.connect();
    try {
      await blocker.query('BEGIN');
      await blocker.query('LOCK TABLE ingest_ledger IN ACCESS EXCLUSIVE MODE');
      const ids: string[] = [];
      for (let i = 0; i < 40; i++) ids.push(await h.enqueue([pushItem(fixture)], { attempts: 1 }));
      await waitUntil('every job held', async () => (await h.queue.getActiveCount()) === 40);
      await waitingOnLedger(h);
      for (const jobId of ids) await dropJobKeys(h, jobId);
      await blocker.query('COMMIT');
      const gone = () => lines.filter((l) => /gone from Redis when (it|they) finished/.test(String(l.msg)));
      await waitUntil('the summary', async () => gone().length >= 2, 15_000);
      await new Promise((r) => setTimeout(r, 300));
      // Before: 80 lines (BullMQ reports each job twice, and the reports of different jobs interleave).
      expect(gone().map((l) => l.msg)).toEqual([
        expect.stringMatching(/^job \S+ was gone from Redis when it finished/),
        '39 more jobs were gone from Redis when they finished; what they committed stays stored',
      ]);
    } finally {
      blocker.release();
    }
  });

  it('counts a job that failed its last attempt (not only poison) as a dead letter', async () => {
    // 42P01 (a missing table: an operator must act) is neither poison nor transient: BullMQ's own
    // attempts apply, and after the last one the job sits in the failed set like any dead letter.
    await using h = await startWriterHarness(db.url);
    const deadLetters = async () =>
      Number(/^writer_dead_letters_total (\S+)$/m.exec(await (await fetch(`${h.url}/metrics`)).text())?.[1]);
    const before = await deadLetters();
    await h.pool.query('ALTER TABLE ingest_ledger RENAME TO ingest_ledger_away');
    try {
      await h.waitForJob(await h.enqueue([pushItem(fixture)], { attempts: 1 }), 'failed');
    } finally {
      await h.pool.query('ALTER TABLE ingest_ledger_away RENAME TO ingest_ledger');
    }
    await waitUntil('dead letter counted', async () => (await deadLetters()) === before + 1, 5000, 50);
  });

  it('counts a job another writer took and never finished (it died) in the lag and in writer_queue_active_jobs', async () => {
    const idle = await idleWriter(db.url, 'lagactive');
    // Takes the job as a writer would, then nothing: as if its process was killed (its lock stays
    // until it expires, and only then does the stalled check return the job to the queue).
    const dead = new Worker(idle.keys.pushQueue, null, { connection: idle.redis, prefix: idle.keys.bullPrefix, autorun: false });
    try {
      await idle.queue.add('push', { v: 1, pushes: [pushItem(fixture)] });
      expect(await dead.getNextJob('dead-writer-token')).toBeDefined();
      await new Promise((r) => setTimeout(r, 1100));
      await idle.writer.pushWorker.refreshGauges();
      const text = await idle.writer.metrics.registry.metrics();
      expect(text).toMatch(/^writer_queue_waiting_jobs 0$/m);
      expect(text).toMatch(/^writer_queue_active_jobs 1$/m);
      expect(Number(/^writer_queue_lag_seconds (\S+)/m.exec(text)?.[1])).toBeGreaterThanOrEqual(1);
    } finally {
      await dead.close(true);
      await idle.close();
    }
  });

  it('counts a push waiting for its retry in the queue lag and in writer_queue_retrying_jobs (it was invisible until it dead-lettered)', async () => {
    await using h = await startWriterHarness(db.url);
    const gauges = async () => {
      await h.writer.pushWorker.refreshGauges();
      const text = await (await fetch(`${h.url}/metrics`)).text();
      const read = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]);
      return {
        lag: read('writer_queue_lag_seconds'),
        retrying: read('writer_queue_retrying_jobs'),
        held: read('writer_in_flight_jobs'),
      };
    };
    let job: Job<PushJob> | undefined;
    await h.pool.query('ALTER TABLE ingest_ledger RENAME TO ingest_ledger_away');
    try {
      // 42P01 fails the attempt (an operator must act); BullMQ's backoff holds the job in its delayed set.
      job = await h.queue.add(
        'push',
        { v: 1, pushes: [pushItem(fixture)] },
        { attempts: 3, backoff: { type: 'fixed', delay: 60_000 } },
      );
      await h.waitForJob(job.id!, 'delayed');
      await new Promise((r) => setTimeout(r, 1100));
      const waiting = await gauges();
      expect(waiting.retrying).toBe(1);
      expect(waiting.held).toBe(0);
      expect(waiting.lag).toBeGreaterThanOrEqual(1);
    } finally {
      await h.pool.query('ALTER TABLE ingest_ledger_away RENAME TO ingest_ledger');
    }
    // Retried now and stored: nothing waits any more.
    await job!.promote();
    await h.waitForJob(job!.id!, 'completed');
    expect(await gauges()).toMatchObject({ lag: 0, retrying: 0 });
  });

  it('keeps dead letters for METRICS_RETENTION_DAYS (they were removed after 7 days, mid-retention)', async () => {
    await using h = await startWriterHarness(db.url, { METRICS_RETENTION_DAYS: '20' });
    // The edge's jobs carry no removeOnFail (a job option would override this one): see push.test.ts.
    expect(h.writer.pushWorker.worker.opts.removeOnFail).toEqual({ age: 20 * 86_400 });
  });

  it('on SIGTERM finishes the batch in flight (commits and acknowledges it) before exiting 0', async () => {
    const prefix = uniquePrefix('sigterm');
    const keys = redisKeys(prefix);
    const redis = new Redis(testEnv.redisUrl, { maxRetriesPerRequest: null });
    const queue = new Queue<PushJob>(keys.pushQueue, { connection: redis, prefix: keys.bullPrefix });
    const pool = createPool(db.url, { max: 1 });
    try {
      const items = Array.from({ length: 4 }, () => pushItem(fixture));
      const job = await queue.add('push', { v: 1, pushes: items }, { removeOnComplete: false });
      const w = spawnWriter(await writerEnv(db.url, prefix, { LOG_LEVEL: 'info', WRITER_TEST_PAUSE_MID_COPY_MS: '1500' }));
      await w.waitForLog('test hook: pausing mid-COPY');
      const exit = await w.kill('SIGTERM');
      expect(exit.code, w.output()).toBe(0);
      expect(await queue.getJobState(job.id!)).toBe('completed');
      const { rows } = await pool.query(
        'SELECT count(DISTINCT push_id)::int AS n FROM collector_metrics WHERE push_id = ANY($1)',
        [items.map((i) => i.push_id)],
      );
      expect(rows[0].n).toBe(4);
      expect(w.output()).toContain('writer draining');
    } finally {
      await queue.close();
      await redis.quit();
      await pool.end();
    }
  });

  it('refuses to start when Redis may evict keys, and warns when AOF is off (saying whether replicas are connected)', async () => {
    const bin = findExecutable('redis-server');
    expect(bin).toBeTruthy();
    const port = await freePort();
    let replica: ReturnType<typeof spawn> | undefined;
    const server = spawn(
      bin!,
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--maxmemory-policy',
        'allkeys-lru',
        '--dir',
        testEnv.dataDir,
      ],
      { stdio: 'ignore' },
    );
    try {
      await waitFor('evicting redis', async () => {
        const r = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
        r.on('error', () => undefined);
        try {
          await r.connect();
          return (await r.ping()) === 'PONG';
        } catch {
          return false;
        } finally {
          r.disconnect();
        }
      });
      const env = {
        ...(await writerEnv(db.url, uniquePrefix('evict'))),
        REDIS_URL: `redis://127.0.0.1:${port}`,
        LOG_LEVEL: 'info',
      };
      const refused = spawnWriter(env);
      expect((await refused.exited).code).toBe(1);
      expect(refused.output()).toContain('maxmemory-policy is allkeys-lru');

      const allowed = spawnWriter({ ...env, WRITER_REQUIRE_NOEVICTION: 'false' });
      await allowed.waitForLog('writer started');
      expect(allowed.output()).toContain('Redis appendonly is off and no replica is connected');
      expect((await allowed.kill('SIGTERM')).code).toBe(0);

      // With a replica (replication instead of AOF, as on ElastiCache), the warning says so.
      const replicaPort = await freePort();
      replica = spawn(
        bin!,
        [
          '--port',
          String(replicaPort),
          '--bind',
          '127.0.0.1',
          '--save',
          '',
          '--dir',
          testEnv.dataDir,
          '--replicaof',
          '127.0.0.1',
          String(port),
        ],
        { stdio: 'ignore' },
      );
      const primary = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 1 });
      try {
        await waitFor('the replica connected', async () => /connected_slaves:1/.test(await primary.info('replication')));
      } finally {
        primary.disconnect();
      }
      const replicated = spawnWriter({ ...env, WRITER_REQUIRE_NOEVICTION: 'false' });
      await replicated.waitForLog('writer started');
      expect(replicated.output()).toContain('Redis appendonly is off, 1 replica(s) connected: a failover keeps the pushes');
      expect((await replicated.kill('SIGTERM')).code).toBe(0);
    } finally {
      replica?.kill('SIGTERM');
      server.kill('SIGTERM');
    }
  });
});
