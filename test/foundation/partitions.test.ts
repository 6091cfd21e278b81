import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPool, maintainPartitions, migrateDatabase, type Pool } from '@pga/db';
import { createTestDatabase, type TestDatabase } from '../helpers';

/**
 * The partition of the UTC day `offsetDays` from `base` (a time in ms). A test reads the clock once
 * and names every day from that reading: one that crosses midnight UTC still names the same
 * partitions in its set-up and its expectations (maintainPartitions goes by its own, later, date).
 */
const dayName = (offsetDays: number, base: number) => {
  const d = new Date(base + offsetDays * 86_400_000);
  return `collector_metrics_p${d.toISOString().slice(0, 10).replaceAll('-', '')}`;
};
/** The start (midnight UTC) of the day `offsetDays` from `base`, as dayName. */
const dayStart = (offsetDays: number, base: number) =>
  `${new Date(base + offsetDays * 86_400_000).toISOString().slice(0, 10)}T00:00:00Z`;

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
    // The test database is a copy of a template migrated when the run began, maybe on an earlier UTC
    // date: migrating again is what every service start does.
    const now = Date.now();
    await migrateDatabase(db.url);
    const names = await partitions();
    for (let d = 0; d <= 7; d++) expect(names).toContain(dayName(d, now));
    expect(names).toContain('collector_metrics_default');
  });

  it('routes a row far in the past or future to the DEFAULT partition instead of failing', async () => {
    expect((await insertAt('1999-01-01T00:00:00Z')).rows[0].part).toBe('collector_metrics_default');
    expect((await insertAt('2999-01-01T00:00:00Z')).rows[0].part).toBe('collector_metrics_default');
    const now = Date.now();
    expect((await insertAt(new Date(now).toISOString())).rows[0].part).toBe(dayName(0, now));
  });

  it('keeps 64-bit integers exact in metric_data', async () => {
    const { rows } = await pool.query(
      `SELECT metric_data->>'queryid' AS q FROM collector_metrics WHERE received_at < '2000-01-01' LIMIT 1`,
    );
    expect(rows[0].q).toBe('-9223372036854775808');
  });

  it('moves waiting DEFAULT rows into a partition created for their day, and drops expired days', async () => {
    // Partitions 7 days ahead of today (the migrations made them for their day), and an 8th: should
    // midnight UTC pass during the test, the runs below find their 7th day ahead there too.
    await maintainPartitions(pool, { daysAhead: 8 });
    const now = Date.now();
    const tenDaysOut = new Date(now + 10 * 86_400_000).toISOString();
    await insertAt(tenDaysOut);
    await insertAt(tenDaysOut);
    // Still beyond the horizon: stays in DEFAULT, no partition for a stray far-future day either.
    const early = await maintainPartitions(pool, { daysAhead: 7, retentionDays: 14 });
    expect(early.movedFromDefault).toBe(0);
    expect(early.created).toEqual([]);
    const result = await maintainPartitions(pool, { daysAhead: 12, retentionDays: 14 });
    expect(result.created).toContain(dayName(10, now));
    expect(result.movedFromDefault).toBe(2);
    const { rows } = await pool.query(`SELECT count(*)::int AS n FROM ${dayName(10, now)}`);
    expect(rows[0].n).toBe(2);

    // Shorten retention below the age of an existing partition: it is dropped.
    await pool
      .query(
        `CREATE TABLE ${dayName(-3, now)} PARTITION OF collector_metrics FOR VALUES FROM ('${dayStart(-3, now)}') TO ('${dayStart(-2, now)}')`,
      )
      .catch(() => undefined);
    const pruned = await maintainPartitions(pool, { daysAhead: 7, retentionDays: 2 });
    expect(pruned.dropped).toContain(dayName(-3, now));
    expect(await partitions()).not.toContain(dayName(-3, now));
  });

  it('drops nothing when told no retention, as every service start runs it (only the writer knows METRICS_RETENTION_DAYS)', async () => {
    const now = Date.now();
    await pool.query(
      `CREATE TABLE ${dayName(-20, now)} PARTITION OF collector_metrics FOR VALUES FROM ('${dayStart(-20, now)}') TO ('${dayStart(-19, now)}')`,
    );
    const row = await insertAt(new Date(now - 20 * 86_400_000 + 60_000).toISOString());
    expect(row.rows[0].part).toBe(dayName(-20, now));

    expect((await maintainPartitions(pool)).dropped).toEqual([]);
    await migrateDatabase(db.url); // what the admin service, the writer and npm start run at start
    expect(await partitions()).toContain(dayName(-20, now));
    // A 30-day retention keeps it too; 14 days does not.
    expect((await maintainPartitions(pool, { retentionDays: 30 })).dropped).toEqual([]);
    expect((await maintainPartitions(pool, { retentionDays: 14 })).dropped).toEqual([dayName(-20, now)]);
    expect(await partitions()).not.toContain(dayName(-20, now));
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
    const now = Date.now();
    const ingest = await pool.connect();
    try {
      // An open ingest transaction, as a writer's COPY is most of the time under load.
      await ingest.query('BEGIN');
      await insertAtWith(ingest, new Date(now).toISOString());
      // Had the ATTACH waited for the open transaction, it would have failed after its lock timeout.
      const result = await maintainPartitions(pool, { daysAhead: 20, lockTimeout: '1s' });
      expect(result.created).toContain(dayName(20, now));
      expect(result.skipped).toEqual([]);
      await ingest.query('COMMIT');
    } finally {
      ingest.release();
    }
    expect((await insertAt(new Date(now + 20 * 86_400_000).toISOString())).rows[0].part).toBe(dayName(20, now));
  });

  it('commits the partitions ahead even when the drops time out (a long query on collector_metrics), and drops them on a later run', async () => {
    const now = Date.now();
    for (const d of [-31, -30])
      await pool.query(
        `CREATE TABLE ${dayName(d, now)} PARTITION OF collector_metrics FOR VALUES FROM ('${dayStart(d, now)}') TO ('${dayStart(d + 1, now)}')`,
      );
    // Every other day ahead exists, and one more: should midnight UTC pass before the run below, the
    // last day ahead of its new date exists too, and the run creates only the day this test dropped.
    await maintainPartitions(pool, { daysAhead: 8 });
    await pool.query(`DROP TABLE IF EXISTS ${dayName(4, now)}`);
    const blocker = await pool.connect();
    try {
      // Pruned at plan time to today's partition: ACCESS SHARE on collector_metrics and that one partition
      // only, so ATTACH (DEFAULT, SHARE UPDATE EXCLUSIVE on the parent) goes through but DROP (ACCESS
      // EXCLUSIVE on the parent) cannot.
      await blocker.query('BEGIN');
      await blocker.query(
        `SELECT count(*) FROM collector_metrics WHERE received_at >= '${dayStart(0, now)}' AND received_at < '${dayStart(0, now).replace('T00', 'T01')}'`,
      );
      const result = await maintainPartitions(pool, { daysAhead: 7, retentionDays: 28, lockTimeout: '500ms' });
      // One drop waited its lock timeout; the other was not tried (it needs the same lock).
      expect(result.created).toEqual([dayName(4, now)]);
      expect(result.dropped).toEqual([]);
      expect(result.skipped).toEqual([
        { partition: dayName(-31, now), action: 'drop', reason: 'lock timeout (500ms)' },
        { partition: dayName(-30, now), action: 'drop', reason: 'not tried: an earlier drop timed out' },
      ]);
      await blocker.query('ROLLBACK');
    } finally {
      blocker.release();
    }
    const names = await partitions();
    expect(names).toContain(dayName(4, now));
    expect(names).toContain(dayName(-31, now));
    const later = await maintainPartitions(pool, { daysAhead: 7, retentionDays: 28 });
    expect(later.dropped).toEqual([dayName(-31, now), dayName(-30, now)]);
    expect(later.skipped).toEqual([]);
    expect(await partitions()).not.toContain(dayName(-30, now));
  });

  it('a day that cannot be created does not keep the days after it from being created; the run reports it and fails', async () => {
    const now = Date.now();
    const [blocked, after] = [dayName(45, now), dayName(46, now)];
    // An object in the way of the day's name (not a relation: to_regclass does not see it).
    await pool.query(`CREATE TYPE ${blocked} AS ENUM ('in the way')`);
    try {
      // 47, one day more than the run below: should midnight UTC pass before it, it finds its new 46th day there.
      const err = await maintainPartitions(pool, { daysAhead: 47 }).catch((e: unknown) => e);
      expect((err as { code?: string }).code).toBe('42710');
      const names = await partitions();
      expect(names).not.toContain(blocked);
      expect(names).toContain(after);
    } finally {
      await pool.query(`DROP TYPE ${blocked}`);
    }
    const result = await maintainPartitions(pool, { daysAhead: 46 });
    expect(result.created).toEqual([blocked]);
  });

  it('keeps the all-in-one SQL function for psql (the same steps in one transaction)', async () => {
    const now = Date.now();
    await pool.query(
      `CREATE TABLE ${dayName(-40, now)} PARTITION OF collector_metrics FOR VALUES FROM ('${dayStart(-40, now)}') TO ('${dayStart(-39, now)}')`,
    );
    // Every other day ahead exists, and one more: should midnight UTC pass before the run below, the
    // last day ahead of its new date exists too, and the run creates only the day this test dropped.
    await maintainPartitions(pool, { daysAhead: 8 });
    await pool.query(`DROP TABLE IF EXISTS ${dayName(3, now)}`);
    const createOnly = await pool.query('SELECT * FROM pga_maintain_metric_partitions(7)');
    expect(createOnly.rows[0]).toMatchObject({ created: [dayName(3, now)], dropped: [], moved: '0', expired: '0' });
    const { rows } = await pool.query('SELECT * FROM pga_maintain_metric_partitions(7, 35)');
    expect(rows[0]).toMatchObject({ created: [], dropped: [dayName(-40, now)] });
    expect(await partitions()).not.toContain(dayName(-40, now));
  });
  it('lists every day ahead in a session whose time zone skips midnight today (daylight saving), as in UTC', async () => {
    // A zone whose clocks go from 00:00 to 01:00 today (America/Santiago did on 2026-09-06): a POSIX
    // rule on today's zero-based day of the year, so the test needs no particular date.
    const now = new Date();
    const yday = Math.floor(
      (Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()) - Date.UTC(now.getUTCFullYear(), 0, 1)) / 86_400_000,
    );
    const zone = `<-04>4<-03>,${yday}/0,${(yday + 180) % 365}/0`;
    const tomorrow = dayName(1, now.getTime());
    await pool.query(`DROP TABLE ${tomorrow}`); // empty: nothing in this database is dated tomorrow
    const client = await pool.connect();
    try {
      await client.query(`SET TimeZone = '${zone}'`);
      const { rows } = await client.query<{ day: string }>(
        "SELECT to_char(d, 'YYYYMMDD') AS day FROM pga_metric_partition_days_to_create(1) AS d",
      );
      expect(rows.map((r) => `collector_metrics_p${r.day}`)).toEqual([tomorrow]);
    } finally {
      await client.query('RESET TimeZone');
      client.release();
      await pool.query(`SELECT pga_create_metric_partition('${tomorrow.slice(-8)}'::date)`);
    }
  });

  it("bounds a day's partition at midnight UTC in a session whose DateStyle is not ISO (zone abbreviations read back otherwise)", async () => {
    // Asia/Kolkata's abbreviation IST, as the Postgres DateStyle writes it, reads back as Israel's
    // +02:00 (timezone_abbreviations' Default): the bounds were 3.5 h late (the day's first hours went
    // to DEFAULT), and a day then bounded right by an ISO session overlapped and could not be attached.
    const now = Date.now();
    const [first, second] = [dayName(60, now), dayName(61, now)];
    const client = await pool.connect();
    try {
      await client.query("SET TimeZone = 'Asia/Kolkata'");
      await client.query("SET DateStyle = 'Postgres, DMY'");
      for (const part of [first, second]) await client.query(`SELECT pga_create_metric_partition('${part.slice(-8)}'::date)`);
    } finally {
      await client.query('RESET TimeZone');
      await client.query('RESET DateStyle');
      client.release();
    }
    try {
      const at = (ms: number) => new Date(Date.parse(dayStart(60, now)) + ms).toISOString();
      expect((await insertAt(at(-1))).rows[0].part).not.toBe(first);
      expect((await insertAt(at(0))).rows[0].part).toBe(first);
      expect((await insertAt(at(3 * 3_600_000))).rows[0].part).toBe(first);
      expect((await insertAt(at(86_400_000 - 1))).rows[0].part).toBe(first);
      expect((await insertAt(at(86_400_000))).rows[0].part).toBe(second);
    } finally {
      await pool.query(`DROP TABLE IF EXISTS ${first}, ${second}`);
      await pool.query(`DELETE FROM collector_metrics WHERE received_at >= $1 AND received_at < $2`, [
        dayStart(59, now),
        dayStart(62, now),
      ]);
    }
  });
});
