import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { capturingLogger, createTestDatabase, type TestDatabase } from '../helpers';
import { fixture, insertCollector, pushItem, startWriterHarness, waitUntil, type WriterHarness } from './helpers';

/** The UTC date `offset` days from `base` (a time in ms): a test reads the clock once and passes it. */
const dateOf = (offset: number, base: number) => new Date(base + offset * 86_400_000).toISOString().slice(0, 10);
/**
 * The partition of the UTC day `offset` days from `base`. A test names its days from one clock
 * reading: one that crosses midnight UTC still names the same partitions in its set-up and its
 * expectations (what the writer's run makes of them is by its own, later, date).
 */
const day = (offset: number, base: number) => `collector_metrics_p${dateOf(offset, base).replaceAll('-', '')}`;

/** One statement on a connection of its own (no writer needs to be running). */
async function sql(db: TestDatabase, text: string, params: unknown[] = []): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    return await client.query(text, params);
  } finally {
    await client.end();
  }
}

async function metric(h: WriterHarness, pattern: RegExp): Promise<number> {
  const text = await (await fetch(`${h.url}/metrics`)).text();
  return text
    .split('\n')
    .filter((l) => pattern.test(l))
    .reduce((a, l) => a + Number(l.split(' ').at(-1)), 0);
}

/** Until the partitions job's run at start is done. */
const firstRun = (h: WriterHarness) =>
  waitUntil('the first run', async () => (await metric(h, /^writer_maintenance_runs_total\{task="partitions"/)) >= 1, 15_000);

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
    const now = Date.now();
    const seed = new pg.Client({ connectionString: db.url });
    await seed.connect();
    try {
      await seed.query(
        `CREATE TABLE ${day(-20, now)} PARTITION OF collector_metrics FOR VALUES FROM ('${dateOf(-20, now)}') TO ('${dateOf(-19, now)}')`,
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
    const b = await startWriterHarness(db.url, {
      WRITER_MAINTENANCE_INTERVAL_MS: '1000',
      METRICS_RETENTION_DAYS: '14',
      PARTITION_DAYS_AHEAD: '9',
      REDIS_KEY_PREFIX: a.prefix,
    });
    try {
      // Both writers upserted the same 1 s schedule; over 4 s one schedule yields ~4 runs, two would yield ~8.
      await new Promise((r) => setTimeout(r, 4000));
      const parts = (
        await a.pool.query(
          `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'collector_metrics'::regclass`,
        )
      ).rows.map((r) => r.relname);
      expect(parts).toContain(day(9, now));
      expect(parts).not.toContain(day(-20, now));
      expect(
        (await a.pool.query(`SELECT count(*)::int AS n FROM collector_metrics_rollup WHERE bucket < now() - interval '15 days'`))
          .rows[0].n,
      ).toBe(0);
      const runsA = await metric(a, /^writer_maintenance_runs_total\{task="partitions"/);
      const runsB = await metric(b, /^writer_maintenance_runs_total\{task="partitions"/);
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

  it('runs at every start, not only when its schedule is new: a restarted writer drops what expired while it was down', async () => {
    const first = await startWriterHarness(db.url, { METRICS_RETENTION_DAYS: '14' });
    try {
      await firstRun(first);
    } finally {
      await first.close();
    }
    // Expired while no writer ran; the hourly schedule's next run is still most of an hour away.
    const now = Date.now();
    await sql(
      db,
      `CREATE TABLE ${day(-25, now)} PARTITION OF collector_metrics FOR VALUES FROM ('${dateOf(-25, now)}') TO ('${dateOf(-24, now)}')`,
    );
    const again = await startWriterHarness(db.url, { METRICS_RETENTION_DAYS: '14', REDIS_KEY_PREFIX: first.prefix });
    try {
      const [schedule] = (await again.writer.maintenance.queue.getJobSchedulers()).filter((s) => s.key === 'partitions');
      expect(schedule!.next! - Date.now()).toBeGreaterThan(30 * 60_000);
      await waitUntil(
        'the expired partition dropped',
        async () => (await sql(db, `SELECT to_regclass($1) AS t`, [day(-25, now)])).rows[0].t === null,
        15_000,
      );
      // Counted once retention is done too; one run, not one per schedule and start.
      const runs = () => metric(again, /^writer_maintenance_runs_total\{task="partitions",outcome="ok"/);
      await waitUntil('the run counted', async () => (await runs()) === 1, 15_000);
      await new Promise((r) => setTimeout(r, 500));
      expect(await runs()).toBe(1);
    } finally {
      await again.close();
    }
  });

  it('retention cuts rollups, ledger and activity where the partitions are cut (midnight UTC), not a rolling day later', async () => {
    const h = await startWriterHarness(db.url, { METRICS_RETENTION_DAYS: '14' });
    try {
      await firstRun(h);
      const collector = '6f1f0a52-0000-4000-8000-000000000001';
      const retentionStart = async () =>
        (
          await h.pool.query<{ t: Date }>(`SELECT (((now() AT TIME ZONE 'UTC')::date - 14)::timestamp AT TIME ZONE 'UTC') AS t`)
        ).rows[0]!.t.getTime();
      let kept: Date;
      for (;;) {
        // The oldest day the partitions keep starts at midnight UTC 14 days before today (PostgreSQL's).
        const start = await retentionStart();
        kept = new Date(start + 60_000); // the partition of this day stays: so does what describes it
        const gone = new Date(start - 60_000); // its day's partition is dropped
        for (const table of ['collector_metrics_rollup', 'ingest_ledger', 'collector_heartbeats', 'collector_push_minutes'])
          await h.pool.query(`DELETE FROM ${table} WHERE collector_id = $1`, [collector]);
        for (const [at, tag] of [
          [kept, 'kept'],
          [gone, 'gone'],
        ] as const) {
          await h.pool.query(
            `INSERT INTO collector_metrics_rollup (collector_id, metric_type, bucket, row_count, record_count) VALUES ($1, $2, $3, 1, 1)`,
            [collector, tag, at],
          );
          await h.pool.query(
            `INSERT INTO ingest_ledger (push_id, collector_id, received_at, row_count, checksum, committed_at)
             VALUES (gen_random_uuid(), $1, $2, 1, $3, $2)`,
            [collector, at, tag.padEnd(64, '0')],
          );
          await h.pool.query(`INSERT INTO collector_heartbeats (collector_id, minute, status) VALUES ($1, $2, 'active')`, [
            collector,
            at,
          ]);
          await h.pool.query(`INSERT INTO collector_push_minutes (collector_id, minute) VALUES ($1, $2)`, [collector, at]);
        }
        await h.writer.maintenance.runNow('partitions');
        // Midnight UTC passed meanwhile: the run cut a day later than these rows were placed around
        // (`kept` went too); again, from the new date.
        if ((await retentionStart()) === start) break;
      }
      const left = async (table: string, column: string) =>
        (await h.pool.query(`SELECT ${column} AS t FROM ${table} WHERE collector_id = $1 ORDER BY 1`, [collector])).rows.map(
          (r: { t: Date }) => r.t.getTime(),
        );
      expect(await left('collector_metrics_rollup', 'bucket')).toEqual([kept.getTime()]);
      expect(await left('ingest_ledger', 'received_at')).toEqual([kept.getTime()]);
      expect(await left('collector_heartbeats', 'minute')).toEqual([kept.getTime()]);
      expect(await left('collector_push_minutes', 'minute')).toEqual([kept.getTime()]);
    } finally {
      await h.close();
    }
  });

  it('one UTC date for a whole run: midnight passing between the partition drops and the retention cuts nothing of the oldest partition kept', async () => {
    // PostgreSQL's clock, as this database's sessions read it: with test_clock ahead of pg_catalog in
    // the search path, now() (in the writer's SQL and in the partition functions alike) is
    // test_clock.now(), the time in test_clock.fake. Column defaults keep pg_catalog's.
    await using own = await createTestDatabase();
    await sql(own, 'CREATE SCHEMA test_clock');
    await sql(own, 'CREATE TABLE test_clock.fake (at timestamptz NOT NULL)');
    await sql(
      own,
      'CREATE FUNCTION test_clock.now() RETURNS timestamptz LANGUAGE sql STABLE AS $$ SELECT at FROM test_clock.fake $$',
    );
    // One second before the coming midnight UTC, then one second after it.
    const midnight = Math.ceil((Date.now() + 1) / 86_400_000) * 86_400_000;
    const [before, after] = [new Date(midnight - 1000), new Date(midnight + 1000)];
    await sql(own, 'INSERT INTO test_clock.fake (at) VALUES ($1)', [before]);
    await sql(own, `ALTER DATABASE ${own.name} SET search_path = public, test_clock, pg_catalog`);
    const base = before.getTime(); // today is the day before that midnight

    const h = await startWriterHarness(own.url, { METRICS_RETENTION_DAYS: '14' });
    const pool = h.writer.pool as unknown as { query: (...args: unknown[]) => Promise<unknown> };
    const query = pool.query;
    try {
      await firstRun(h);
      expect((await sql(own, 'SELECT now() AS t')).rows[0].t).toEqual(before);
      // Day -15 is past the 14 days, day -14 the oldest kept: a row of each, and what describes it.
      const collector = '6f1f0a52-0000-4000-8000-000000000002';
      for (const offset of [-15, -14])
        await sql(
          own,
          `CREATE TABLE ${day(offset, base)} PARTITION OF collector_metrics FOR VALUES FROM ('${dateOf(offset, base)}') TO ('${dateOf(offset + 1, base)}')`,
        );
      const noon = (offset: number) => new Date(Date.parse(`${dateOf(offset, base)}T12:00:00Z`));
      for (const [at, tag] of [
        [noon(-14), 'kept'],
        [noon(-15), 'gone'],
      ] as const) {
        await sql(
          own,
          `INSERT INTO collector_metrics_rollup (collector_id, metric_type, bucket, row_count, record_count) VALUES ($1, $2, $3, 1, 1)`,
          [collector, tag, at],
        );
        await sql(
          own,
          `INSERT INTO ingest_ledger (push_id, collector_id, received_at, row_count, checksum, committed_at)
           VALUES (gen_random_uuid(), $1, $2, 1, $3, $2)`,
          [collector, at, tag.padEnd(64, '0')],
        );
        await sql(own, `INSERT INTO collector_heartbeats (collector_id, minute, status) VALUES ($1, $2, 'active')`, [
          collector,
          at,
        ]);
        await sql(own, `INSERT INTO collector_push_minutes (collector_id, minute) VALUES ($1, $2)`, [collector, at]);
      }
      // Midnight passes once the partition steps are done, as the retention begins (its first statement
      // deletes from the ledger).
      let passed = false;
      pool.query = async (...args: unknown[]) => {
        if (!passed && typeof args[0] === 'string' && args[0].includes('DELETE FROM ingest_ledger')) {
          passed = true;
          await sql(own, 'UPDATE test_clock.fake SET at = $1', [after]);
        }
        return query.apply(h.writer.pool, args);
      };
      const result = (await h.writer.maintenance.runNow('partitions')) as { dropped: string[] };
      expect(passed).toBe(true);
      expect(result.dropped).toEqual([day(-15, base)]);
      expect((await sql(own, 'SELECT to_regclass($1) AS t', [day(-14, base)])).rows[0].t).not.toBeNull();
      // The oldest partition kept keeps its rollups, ledger entries and activity: the run cut them by
      // the date its drops used, not by the date the clock had reached meanwhile.
      const left = async (table: string, column: string) =>
        (await sql(own, `SELECT ${column} AS t FROM ${table} WHERE collector_id = $1 ORDER BY 1`, [collector])).rows.map(
          (r: { t: Date }) => r.t.toISOString(),
        );
      const kept = [noon(-14).toISOString()];
      expect(await left('collector_metrics_rollup', 'bucket')).toEqual(kept);
      expect(await left('ingest_ledger', 'received_at')).toEqual(kept);
      expect(await left('collector_heartbeats', 'minute')).toEqual(kept);
      expect(await left('collector_push_minutes', 'minute')).toEqual(kept);
      // A date after PostgreSQL's is refused: it would drop days still within the retention.
      await expect(sql(own, `SELECT pga_expired_metric_partitions(14, $1::date)`, [dateOf(2, base)])).rejects.toThrow(
        /after today/,
      );
    } finally {
      pool.query = query;
      await h.close();
    }
  });

  it('retention leaves no rollup of a dropped day: cells not folded yet are folded before the prune, not after it', async () => {
    const env = { METRICS_RETENTION_DAYS: '14', WRITER_ROLLUP_FOLD_MS: '3600000' };
    const first = await startWriterHarness(db.url, env);
    const collector = await insertCollector(first.pool);
    const push = pushItem(fixture, collector, new Date(Date.now() - 5 * 86_400_000));
    try {
      await firstRun(first);
      // The fold's own first run too (its schedule runs at once): one after the push folded it.
      await waitUntil(
        'the first fold',
        async () => (await metric(first, /^writer_maintenance_runs_total\{task="rollup",outcome="ok"/)) >= 1,
        15_000,
      );
      await first.waitForJob(await first.enqueue([push]), 'completed');
    } finally {
      await first.close();
    }
    const cells = (table: string) =>
      sql(db, `SELECT count(*)::int AS n FROM ${table} WHERE collector_id = $1`, [collector]).then((r) => r.rows[0].n as number);
    expect(await cells('collector_metrics_rollup_live')).toBeGreaterThan(0);
    expect(await cells('collector_metrics_rollup')).toBe(0); // pending: no fold since the push
    // The retention lowered to 2 days: the push's day is dropped at the restart's run.
    const { logger, lines } = capturingLogger('writer-test');
    const second = await startWriterHarness(
      db.url,
      { ...env, METRICS_RETENTION_DAYS: '2', REDIS_KEY_PREFIX: first.prefix },
      logger,
    );
    try {
      await waitUntil('the run at start', async () => lines.some((l) => l.msg === 'retention done'), 15_000);
      await second.writer.maintenance.runNow('rollup');
      expect(
        (await sql(db, 'SELECT count(*)::int AS n FROM collector_metrics WHERE push_id = $1', [push.push_id])).rows[0].n,
      ).toBe(0);
      // Until now the pending cells were folded in after the prune: 11 rollup rows (13 rows counted)
      // of a day with no rows left, until the next run an hour later.
      expect(await cells('collector_metrics_rollup')).toBe(0);
      expect(await cells('collector_metrics_rollup_live')).toBe(0);
    } finally {
      await second.close();
    }
  });

  it('retention empties the deny set of long-expired tokens and prunes expired token records and finished commands', async () => {
    const h = await startWriterHarness(db.url, { METRICS_RETENTION_DAYS: '14' });
    try {
      // After the run at start, so the run below is the one that finds what is seeded.
      await firstRun(h);
      const collector = await insertCollector(h.pool);
      const token = async (expires: string) =>
        (
          await h.pool.query<{ jti: string }>(
            `INSERT INTO collector_tokens (jti, collector_id, token_hash, issued_at, expires_at, revoked_at)
             VALUES (gen_random_uuid(), $1, md5(random()::text) || md5(random()::text), now() - interval '400 days', ${expires}, now() - interval '20 days')
             RETURNING jti`,
            [collector],
          )
        ).rows[0]!.jti;
      const live = await token(`now() + interval '1 day'`); // revoked and still valid: must stay refused
      const lately = await token(`now() - interval '10 minutes'`); // an edge's clock may run behind
      const expired = await token(`now() - interval '2 hours'`); // no edge accepts it: leaves the set
      const old = await token(`now() - interval '15 days'`); // expired before the retention's start: record goes
      const unknown = '0b1c2d3e-0000-4000-8000-00000000abcd'; // no record: cannot be known to have expired
      await h.redis.sadd(h.keys.deniedJtis, live, lately, expired, old.toUpperCase(), unknown, 'not-a-uuid');
      const command = async (requested: string, state: string) =>
        (
          await h.pool.query<{ id: string }>(
            `INSERT INTO collector_commands (collector_id, action, requested_at, expires_at, delivered_at, dropped_at)
             SELECT $1, 'stop', r, ${state === 'pending' ? "now() + interval '1 day'" : "r + interval '1 day'"},
                    ${state === 'delivered' ? 'r' : 'NULL'}, ${state === 'dropped' ? 'r' : 'NULL'}
               FROM (SELECT ${requested} AS r) t RETURNING id`,
            [collector],
          )
        ).rows[0]!.id;
      for (const state of ['delivered', 'dropped', 'expired']) await command(`now() - interval '20 days'`, state); // all go
      const oldPending = await command(`now() - interval '20 days'`, 'pending'); // a long COMMAND_TTL_SECONDS
      const recent = await command(`now() - interval '2 days'`, 'delivered');
      // Delivery records (the writer's own, by command id): older than the retention's start go.
      await h.pool.query(
        `INSERT INTO collector_command_deliveries (command_id, delivered_at)
         VALUES ('old-1', now() - interval '20 days'), ('old-2', now() - interval '15 days'), ('recent', now() - interval '2 days')`,
      );

      const result = (await h.writer.maintenance.runNow('partitions')) as {
        deniedJtis: number;
        tokens: number;
        commands: number;
        commandDeliveries: number;
      };
      expect(result).toMatchObject({ deniedJtis: 2, tokens: 1, commands: 3, commandDeliveries: 2 });
      expect((await h.pool.query('SELECT command_id FROM collector_command_deliveries')).rows).toEqual([
        { command_id: 'recent' },
      ]);
      expect((await h.redis.smembers(h.keys.deniedJtis)).sort()).toEqual([live, lately, unknown, 'not-a-uuid'].sort());
      const tokens = await h.pool.query<{ jti: string }>('SELECT jti FROM collector_tokens WHERE collector_id = $1', [collector]);
      expect(tokens.rows.map((r) => r.jti).sort()).toEqual([live, lately, expired].sort());
      const commands = await h.pool.query<{ id: string }>('SELECT id FROM collector_commands WHERE collector_id = $1', [
        collector,
      ]);
      expect(commands.rows.map((r) => r.id).sort()).toEqual([oldPending, recent].sort());
    } finally {
      await h.close();
    }
  });

  it('puts back schedules that Redis lost (emptied, or failed over to a replica without them), and they run again', async () => {
    const { logger, lines } = capturingLogger('writer-test');
    const h = await startWriterHarness(db.url, { WRITER_ROLLUP_FOLD_MS: '1000' }, logger);
    try {
      const queue = h.writer.maintenance.queue;
      await waitUntil(
        'the first rollup',
        async () => (await metric(h, /^writer_maintenance_runs_total\{task="rollup"/)) >= 1,
        15_000,
      );
      // What an empty Redis holds of the maintenance queue: nothing (this Redis is shared by other
      // tests, so only this writer's maintenance keys go).
      const stale = await h.redis.keys(`${h.keys.bullPrefix}:${h.keys.maintenanceQueue}:*`);
      await h.redis.del(...stale);
      const before = await metric(h, /^writer_maintenance_runs_total\{task="rollup"/);
      await waitUntil(
        'all three schedules back',
        async () =>
          (await queue.getJobSchedulers())
            .map((s) => s.key)
            .sort()
            .join() === 'partitions,rollup,sweep',
        10_000,
      );
      expect((await queue.getJobScheduler('rollup'))?.every).toBe(1000);
      await waitUntil(
        'the rollup running again',
        async () => (await metric(h, /^writer_maintenance_runs_total\{task="rollup"/)) > before,
        10_000,
      );
      // Said in one warning, or two if a check was half-way through when the keys went. (A rollup
      // job running when its keys were deleted may add a worker error of its own: not asserted.)
      const said = lines.filter((l) => l.level === 40 && l.msg.startsWith('maintenance schedules missing from Redis'));
      expect(said.length).toBeGreaterThanOrEqual(1);
      expect(said.length).toBeLessThanOrEqual(2);
      expect(said.flatMap((l) => l.jobs as string[]).sort()).toEqual(['partitions', 'rollup', 'sweep']);
    } finally {
      await h.close();
    }
  });

  it('keeps what the last writer to start says, on every writer: a writer with another METRICS_RETENTION_DAYS warns, and the others run its settings', async () => {
    const now = Date.now();
    const partition = (offset: number) => sql(db, `SELECT pga_create_metric_partition($1::date)`, [dateOf(offset, now)]);
    const exists = async (offset: number) =>
      (await sql(db, `SELECT to_regclass($1) AS t`, [day(offset, now)])).rows[0].t !== null;
    const a = await startWriterHarness(db.url, { METRICS_RETENTION_DAYS: '14' });
    try {
      await firstRun(a);
      const { logger, lines } = capturingLogger('writer-test');
      const b = await startWriterHarness(db.url, { METRICS_RETENTION_DAYS: '3', REDIS_KEY_PREFIX: a.prefix }, logger);
      await b.close();
      // The run b added at its start (with its settings) done, so that it cannot drop the day below first.
      await waitUntil(
        'no partitions run pending',
        async () => {
          const counts = await a.writer.maintenance.queue.getJobCounts('waiting', 'active', 'prioritized');
          return Object.values(counts).every((n) => n === 0);
        },
        15_000,
      );
      expect(lines.filter((l) => l.level === 40).map((l) => l.msg)).toEqual([
        "partition maintenance, shared by all writers, changes from METRICS_RETENTION_DAYS=14 PARTITION_DAYS_AHEAD=7 to 3 and 7 (this writer's); give every writer the same settings",
      ]);
      const [schedule] = (await a.writer.maintenance.queue.getJobSchedulers()).filter((s) => s.key === 'partitions');
      expect(schedule!.template?.data).toEqual({ retentionDays: 3, daysAhead: 7 });
      // Writer a (its own setting 14) runs the schedule's next job: a day 5 days old is past the 3 days now.
      await partition(-5);
      expect(await exists(-5)).toBe(true);
      const runs = await metric(a, /^writer_maintenance_runs_total\{task="partitions",outcome="ok"/);
      await a.writer.maintenance.queue.add('partitions', schedule!.template!.data);
      await waitUntil(
        'the run by writer a',
        async () => (await metric(a, /^writer_maintenance_runs_total\{task="partitions",outcome="ok"/)) > runs,
        15_000,
      );
      expect(await exists(-5)).toBe(false);
    } finally {
      await a.close();
    }
  });

  it('warns when a writer changes a schedule all writers share (the last to start sets it, for all of them)', async () => {
    const first = await startWriterHarness(db.url);
    await first.close();
    const { logger, lines } = capturingLogger('writer-test');
    const second = await startWriterHarness(
      db.url,
      { REDIS_KEY_PREFIX: first.prefix, WRITER_SWEEP_INTERVAL_MS: '3600000' },
      logger,
    );
    try {
      const schedules = await second.writer.maintenance.queue.getJobSchedulers();
      expect(schedules.find((s) => s.key === 'sweep')?.every).toBe(3_600_000);
      expect(lines.filter((l) => l.level === 40).map((l) => l.msg)).toEqual([
        "the sweep schedule, shared by all writers, changes from every 15000 ms to 3600000 ms (this writer's WRITER_SWEEP_INTERVAL_MS); give every writer the same setting",
      ]);
    } finally {
      await second.close();
    }
  });

  it('a partition that cannot be dropped (a query holds it) does not undo or hold up the rest: partitions ahead, other drops and retention still happen', async () => {
    const h = await startWriterHarness(db.url, { METRICS_RETENTION_DAYS: '14', PARTITION_DAYS_AHEAD: '7' });
    const blocker = new pg.Client({ connectionString: db.url });
    await blocker.connect();
    const now = Date.now();
    const partitionNames = async () =>
      (
        await h.pool.query<{ relname: string }>(
          `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'collector_metrics'::regclass`,
        )
      ).rows.map((r) => r.relname);
    const expiredLedger = async () =>
      (await h.pool.query(`SELECT count(*)::int AS n FROM ingest_ledger WHERE committed_at < now() - interval '15 days'`)).rows[0]
        .n as number;
    try {
      await waitUntil(
        'first scheduled partitions run',
        async () => (await metric(h, /^writer_maintenance_runs_total\{task="partitions"/)) >= 1,
      );
      // Two expired days, a missing day ahead and an expired ledger entry.
      for (const d of [-26, -25])
        await h.pool.query(
          `CREATE TABLE ${day(d, now)} PARTITION OF collector_metrics FOR VALUES FROM ('${dateOf(d, now)}') TO ('${dateOf(d + 1, now)}')`,
        );
      await h.pool.query(`DROP TABLE IF EXISTS ${day(5, now)}`);
      await h.pool.query(
        `INSERT INTO ingest_ledger (push_id, collector_id, received_at, row_count, checksum, committed_at)
         VALUES (gen_random_uuid(), gen_random_uuid(), now() - interval '20 days', 1, repeat('0', 64), now() - interval '20 days')`,
      );
      expect(await expiredLedger()).toBe(1);
      // A long query on the older expired day: its ACCESS SHARE lock blocks DROP TABLE.
      const blockerPid = (await blocker.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      await blocker.query('BEGIN');
      await blocker.query(`SELECT * FROM ${day(-26, now)} LIMIT 1`);

      const first = (await h.writer.maintenance.runNow('partitions')) as {
        created: string[];
        dropped: string[];
        skipped: { partition: string; action: string; reason: string }[];
        ledger: number;
      };
      // Nothing waited for the blocked partition's lock (so no ACCESS EXCLUSIVE was queued before the
      // COPYs): the drop was skipped for the blocker's lock, seen before any DROP, and no step met its
      // lock timeout (that would be a skip for "lock timeout (2s)", or the run rejecting with 55P03).
      // Said by the reason, not by the run's wall time: that bound equalled the 2 s lock timeout, which a
      // run on a loaded machine can take without waiting for any lock.
      expect(first.created).toContain(day(5, now));
      expect(first.dropped).toEqual([day(-25, now)]);
      expect(first.skipped).toEqual([{ partition: day(-26, now), action: 'drop', reason: `in use by pid ${blockerPid}` }]);
      expect(first.ledger).toBeGreaterThanOrEqual(1);
      const parts = await partitionNames();
      expect(parts).toContain(day(5, now));
      expect(parts).toContain(day(-26, now));
      expect(parts).not.toContain(day(-25, now));
      expect(await expiredLedger()).toBe(0);

      // The blocker is gone: the next run drops it.
      await blocker.query('ROLLBACK');
      const second = (await h.writer.maintenance.runNow('partitions')) as { dropped: string[]; skipped: unknown[] };
      expect(second.dropped).toEqual([day(-26, now)]);
      expect(second.skipped).toEqual([]);
      expect(await partitionNames()).not.toContain(day(-26, now));
    } finally {
      await blocker.end();
      await h.close();
    }
  });

  it('never holds up ingest: with a long transaction on the table, partition DDL gives up after its lock timeout', async () => {
    const h = await startWriterHarness(db.url);
    const blocker = await h.pool.connect();
    try {
      // Let the scheduled run at start finish first, so it cannot create the partition behind our back.
      await waitUntil(
        'first scheduled partitions run',
        async () => (await metric(h, /^writer_maintenance_runs_total\{task="partitions"/)) >= 1,
      );
      const now = Date.now();
      await h.pool.query(`DROP TABLE IF EXISTS ${day(6, now)}`);
      const pushId = (
        await h.pool.query<{ push_id: string }>(
          `INSERT INTO ingest_ledger (push_id, collector_id, received_at, row_count, checksum, committed_at)
           VALUES (gen_random_uuid(), gen_random_uuid(), now() - interval '20 days', 1, repeat('0', 64), now() - interval '20 days')
           RETURNING push_id`,
        )
      ).rows[0]!.push_id;
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
      // Retention ran all the same.
      expect((await h.pool.query('SELECT 1 FROM ingest_ledger WHERE push_id = $1', [pushId])).rowCount).toBe(0);
      await h.waitForJob(jobId, 'completed', 10_000);
      await blocker.query('ROLLBACK');
      const result = (await h.writer.maintenance.runNow('partitions')) as { created: string[] };
      expect(result.created).toContain(day(6, now));
    } finally {
      blocker.release();
      await h.close();
    }
  });
});
