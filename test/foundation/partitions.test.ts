import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPool, maintainPartitions, migrateDatabase, type Pool } from '@pga/db';
import { createTestDatabase, type TestDatabase } from '../helpers';

const dayName = (offsetDays: number) => {
  const d = new Date(Date.now() + offsetDays * 86_400_000);
  return `collector_metrics_p${d.toISOString().slice(0, 10).replaceAll('-', '')}`;
};

describe('collector_metrics partitions', () => {
  let db: TestDatabase;
  let pool: Pool;

  beforeAll(async () => {
    db = await createTestDatabase();
    pool = createPool(db.url, { max: 2 });
  });
  afterAll(async () => {
    await pool.end();
    await db.drop();
  });

  const partitions = async () =>
    (
      await pool.query<{ relname: string }>(
        `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'collector_metrics'::regclass ORDER BY 1`,
      )
    ).rows.map((r) => r.relname);

  const insertAtWith = (db: Pick<Pool, 'query'>, receivedAt: string) =>
    db.query(
      `INSERT INTO collector_metrics (collector_id, push_id, metric_type, metric_data, received_at)
       VALUES ($1, $2, 'pg_stats', '{"queryid": -9223372036854775808}', $3) RETURNING tableoid::regclass::text AS part`,
      [randomUUID(), randomUUID(), receivedAt],
    );
  const insertAt = (receivedAt: string) => insertAtWith(pool, receivedAt);

  it('has daily partitions for today and the next 7 days, and a DEFAULT partition', async () => {
    const names = await partitions();
    for (let d = 0; d <= 7; d++) expect(names).toContain(dayName(d));
    expect(names).toContain('collector_metrics_default');
  });

  it('routes a row far in the past or future to the DEFAULT partition instead of failing', async () => {
    expect((await insertAt('1999-01-01T00:00:00Z')).rows[0].part).toBe('collector_metrics_default');
    expect((await insertAt('2999-01-01T00:00:00Z')).rows[0].part).toBe('collector_metrics_default');
    expect((await insertAt(new Date().toISOString())).rows[0].part).toBe(dayName(0));
  });

  it('keeps 64-bit integers exact in metric_data', async () => {
    const { rows } = await pool.query(
      `SELECT metric_data->>'queryid' AS q FROM collector_metrics WHERE received_at < '2000-01-01' LIMIT 1`,
    );
    expect(rows[0].q).toBe('-9223372036854775808');
  });

  it('moves waiting DEFAULT rows into a partition created for their day, and drops expired days', async () => {
    const tenDaysOut = new Date(Date.now() + 10 * 86_400_000).toISOString();
    await insertAt(tenDaysOut);
    await insertAt(tenDaysOut);
    // Still beyond the horizon: stays in DEFAULT, no partition for a stray far-future day either.
    const early = await maintainPartitions(pool, { daysAhead: 7, retentionDays: 14 });
    expect(early.movedFromDefault).toBe(0);
    expect(early.created).toEqual([]);
    const result = await maintainPartitions(pool, { daysAhead: 12, retentionDays: 14 });
    expect(result.created).toContain(dayName(10));
    expect(result.movedFromDefault).toBe(2);
    const { rows } = await pool.query(`SELECT count(*)::int AS n FROM ${dayName(10)}`);
    expect(rows[0].n).toBe(2);

    // Shorten retention below the age of an existing partition: it is dropped.
    await pool
      .query(
        `CREATE TABLE ${dayName(-3)} PARTITION OF collector_metrics FOR VALUES FROM ('${new Date(Date.now() - 3 * 86_400_000).toISOString().slice(0, 10)}T00:00:00Z') TO ('${new Date(Date.now() - 2 * 86_400_000).toISOString().slice(0, 10)}T00:00:00Z')`,
      )
      .catch(() => undefined);
    const pruned = await maintainPartitions(pool, { daysAhead: 7, retentionDays: 2 });
    expect(pruned.dropped).toContain(dayName(-3));
    expect(await partitions()).not.toContain(dayName(-3));
  });

  const dayStart = (offsetDays: number) =>
    `${new Date(Date.now() + offsetDays * 86_400_000).toISOString().slice(0, 10)}T00:00:00Z`;

  it('drops nothing when told no retention, as every service start runs it (only the writer knows METRICS_RETENTION_DAYS)', async () => {
    await pool.query(
      `CREATE TABLE ${dayName(-20)} PARTITION OF collector_metrics FOR VALUES FROM ('${dayStart(-20)}') TO ('${dayStart(-19)}')`,
    );
    const row = await insertAt(new Date(Date.now() - 20 * 86_400_000 + 60_000).toISOString());
    expect(row.rows[0].part).toBe(dayName(-20));

    expect((await maintainPartitions(pool)).dropped).toEqual([]);
    await migrateDatabase(db.url); // what the admin service, the writer and npm start run at start
    expect(await partitions()).toContain(dayName(-20));
    // A 30-day retention keeps it too; 14 days does not.
    expect((await maintainPartitions(pool, { retentionDays: 30 })).dropped).toEqual([]);
    expect((await maintainPartitions(pool, { retentionDays: 14 })).dropped).toEqual([dayName(-20)]);
    expect(await partitions()).not.toContain(dayName(-20));
  });

  it('deletes DEFAULT-partition rows older than the retention, and only with a retention', async () => {
    // A day with no partition (e.g. a dead letter retried after its day was dropped): DEFAULT.
    const old = await insertAt(new Date(Date.now() - 20 * 86_400_000).toISOString());
    const future = await insertAt('2999-06-01T00:00:00Z');
    expect(old.rows[0].part).toBe('collector_metrics_default');
    const count = async () =>
      (
        await pool.query(
          `SELECT count(*)::int AS n FROM collector_metrics_default WHERE received_at < now() - interval '15 days'`,
        )
      ).rows[0].n;
    expect(await count()).toBeGreaterThanOrEqual(1);

    expect((await maintainPartitions(pool)).expiredFromDefault).toBe(0);
    expect(await count()).toBeGreaterThanOrEqual(1);
    const result = await maintainPartitions(pool, { retentionDays: 14 });
    expect(result.expiredFromDefault).toBeGreaterThanOrEqual(1);
    expect(await count()).toBe(0);
    expect(future.rows[0].part).toBe('collector_metrics_default');
    const { rows } = await pool.query(
      `SELECT count(*)::int AS n FROM collector_metrics_default WHERE received_at = '2999-06-01T00:00:00Z'`,
    );
    expect(rows[0].n).toBeGreaterThanOrEqual(1);
  });

  it('creates partitions ahead without waiting for the COPYs in flight (attach, not CREATE … PARTITION OF)', async () => {
    const ingest = await pool.connect();
    try {
      // An open ingest transaction, as a writer's COPY is most of the time under load.
      await ingest.query('BEGIN');
      await insertAtWith(ingest, new Date().toISOString());
      const started = Date.now();
      const result = await maintainPartitions(pool, { daysAhead: 20, lockTimeout: '1s' });
      expect(result.created).toContain(dayName(20));
      expect(Date.now() - started).toBeLessThan(1000);
      await ingest.query('COMMIT');
    } finally {
      ingest.release();
    }
    expect((await insertAt(new Date(Date.now() + 20 * 86_400_000).toISOString())).rows[0].part).toBe(dayName(20));
  });
});
