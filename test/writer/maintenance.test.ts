import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../helpers';
import { fixture, pushItem, startWriterHarness, waitUntil, type WriterHarness } from './helpers';

const day = (offset: number) =>
  `collector_metrics_p${new Date(Date.now() + offset * 86_400_000).toISOString().slice(0, 10).replaceAll('-', '')}`;

async function metric(h: WriterHarness, pattern: RegExp): Promise<number> {
  const text = await (await fetch(`${h.url}/metrics`)).text();
  return text
    .split('\n')
    .filter((l) => pattern.test(l))
    .reduce((a, l) => a + Number(l.split(' ').at(-1)), 0);
}

describe('writer: partition and retention job', () => {
  let db: TestDatabase;

  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('runs single-flight across two writers: creates partitions ahead, drops expired ones, prunes old rollups', async () => {
    // Seed an expired partition and rollup before the writers start, so this DDL cannot race (and
    // deadlock with) their own maintenance run.
    const seed = new pg.Client({ connectionString: db.url });
    await seed.connect();
    try {
      await seed.query(
        `CREATE TABLE ${day(-20)} PARTITION OF collector_metrics FOR VALUES FROM ('${new Date(Date.now() - 20 * 86_400_000).toISOString().slice(0, 10)}') TO ('${new Date(Date.now() - 19 * 86_400_000).toISOString().slice(0, 10)}')`,
      );
      await seed.query(
        `INSERT INTO collector_metrics_rollup (collector_id, metric_type, bucket, row_count, record_count) VALUES (gen_random_uuid(), 'x', now() - interval '20 days', 1, 1)`,
      );
    } finally {
      await seed.end();
    }
    const a = await startWriterHarness(db.url, {
      WRITER_MAINTENANCE_INTERVAL_MS: '1000',
      METRICS_RETENTION_DAYS: '14',
      PARTITION_DAYS_AHEAD: '9',
    });
    // second writer on the same Redis prefix (same queues)
    const b = await startWriterHarness(db.url, { WRITER_MAINTENANCE_INTERVAL_MS: '1000', REDIS_KEY_PREFIX: a.prefix });
    try {
      // Both writers upserted the same 1 s schedule; over 4 s one schedule yields ~4 runs, two would yield ~8.
      await new Promise((r) => setTimeout(r, 4000));
      const parts = (
        await a.pool.query(
          `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'collector_metrics'::regclass`,
        )
      ).rows.map((r) => r.relname);
      expect(parts).toContain(day(9));
      expect(parts).not.toContain(day(-20));
      expect(
        (await a.pool.query(`SELECT count(*)::int AS n FROM collector_metrics_rollup WHERE bucket < now() - interval '15 days'`))
          .rows[0].n,
      ).toBe(0);
      const runsA = await metric(a, /^writer_maintenance_runs_total\{job="partitions"/);
      const runsB = await metric(b, /^writer_maintenance_runs_total\{job="partitions"/);
      expect(runsA + runsB).toBeGreaterThanOrEqual(2);
      expect(runsA + runsB).toBeLessThanOrEqual(6);
      expect((await a.writer.maintenance.queue.getJobSchedulers()).map((s) => s.key).sort()).toEqual([
        'partitions',
        'rollup',
        'sweep',
      ]);
    } finally {
      await b.close();
      await a.close();
    }
  });

  it('never holds up ingest: with a long transaction on the table, partition DDL gives up after its lock timeout', async () => {
    const h = await startWriterHarness(db.url);
    const blocker = await h.pool.connect();
    try {
      // Let the scheduled run at start finish first, so it cannot create the partition behind our back.
      await waitUntil(
        'first scheduled partitions run',
        async () => (await metric(h, /^writer_maintenance_runs_total\{job="partitions"/)) >= 1,
      );
      await h.pool.query(`DROP TABLE IF EXISTS ${day(6)}`);
      await blocker.query('BEGIN');
      await blocker.query('SELECT count(*) FROM collector_metrics'); // AccessShareLock held until ROLLBACK
      const started = Date.now();
      const maintenance = h.writer.maintenance.runNow('partitions').then(
        () => 'done',
        (err: { code?: string }) => err.code,
      );
      // While the DDL waits for its lock, a push still gets stored (after at most the lock timeout).
      const jobId = await h.enqueue([pushItem(fixture)]);
      expect(await maintenance).toBe('55P03');
      expect(Date.now() - started).toBeLessThan(5000);
      await h.waitForJob(jobId, 'completed', 10_000);
      await blocker.query('ROLLBACK');
      const result = (await h.writer.maintenance.runNow('partitions')) as { created: string[] };
      expect(result.created).toContain(day(6));
    } finally {
      blocker.release();
      await h.close();
    }
  });
});
