import { cpSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPool, maintainPartitions, migrateDatabase, MIGRATIONS_DIR, runMigrations, type Pool } from '@pga/db';
import { createTestDatabase, type TestDatabase } from '../helpers';

/** This release's migration files from `first` on, in order (0049 and whatever was released after it). */
const migrationsFrom = (first: string) =>
  readdirSync(MIGRATIONS_DIR)
    .filter((f) => /^\d{4}_.*\.sql$/.test(f) && f >= first)
    .sort();

/**
 * Migration 0049 (pga_repair_metric_partition_bounds): daily partitions that pga_create_metric_partition
 * bounded off their UTC day before 0048 (a session whose DateStyle was not ISO, in a zone whose
 * abbreviation reads back as another offset) get their day's bounds, and every row the partition of
 * its UTC day. Based on the reproduction of review30.
 */

const DAY = 86_400_000;
const HOUR = 3_600_000;
const dayOf = (offset: number) => new Date(Date.now() + offset * DAY).toISOString().slice(0, 10);
const nameOf = (offset: number) => `collector_metrics_p${dayOf(offset).replaceAll('-', '')}`;
const dayStart = (offset: number) => Date.parse(`${dayOf(offset)}T00:00:00Z`);

/** A copy of the migrations before `before` (e.g. '0048': 0001–0047). */
function migrationsBefore(before: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'pga-repair-mig-'));
  for (const f of readdirSync(MIGRATIONS_DIR)) if (f < before) cpSync(path.join(MIGRATIONS_DIR, f), path.join(dir, f));
  return dir;
}

/** Creates partitions with the function of the day, in a session with this TimeZone and DateStyle. */
async function createIn(pool: Pool, timeZone: string, dateStyle: string, offsets: number[]) {
  const client = await pool.connect();
  try {
    await client.query(`SET TimeZone = '${timeZone}'`);
    await client.query(`SET DateStyle = '${dateStyle}'`);
    for (const d of offsets) await client.query('SELECT pga_create_metric_partition($1::date)', [dayOf(d)]);
  } finally {
    await client.query('RESET ALL');
    client.release();
  }
}

/** One row every `everyMinutes` from the start of day `from` to the start of day `to` (UTC). */
const insertRows = (pool: Pool, from: number, to: number, everyMinutes: number) =>
  pool.query(
    `INSERT INTO collector_metrics (collector_id, push_id, metric_type, metric_data, received_at)
     SELECT gen_random_uuid(), gen_random_uuid(), 'pg_stats', jsonb_build_object('n', extract(epoch FROM t)), t
       FROM generate_series(to_timestamp($1::double precision), to_timestamp($2::double precision) - interval '1 second',
                            make_interval(mins => $3)) AS t`,
    [dayStart(from) / 1000, dayStart(to) / 1000, everyMinutes],
  );

/** Every row, by what it holds: unchanged by a repair that neither loses nor duplicates a row. */
const checksum = async (pool: Pool) =>
  (
    await pool.query<{ n: number; h: string }>(
      `SELECT count(*)::int AS n,
              md5(string_agg(concat_ws('|', id, collector_id, push_id, extract(epoch FROM received_at), metric_data), ',' ORDER BY id)) AS h
         FROM collector_metrics`,
    )
  ).rows[0]!;

/** Rows not in the partition of their UTC day (or, when their day has none, not in DEFAULT). */
const misplaced = async (pool: Pool) =>
  (
    await pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM collector_metrics m
        WHERE m.tableoid::regclass::text IS DISTINCT FROM coalesce(
                to_regclass('collector_metrics_p' || to_char(m.received_at AT TIME ZONE 'UTC', 'YYYYMMDD'))::text,
                'collector_metrics_default')`,
    )
  ).rows[0]!.n;

/** Each daily partition's bounds, as text in DateStyle ISO and TimeZone UTC. */
async function bounds(pool: Pool): Promise<Record<string, string>> {
  const client = await pool.connect();
  try {
    await client.query("SET TimeZone = 'UTC'");
    const { rows } = await client.query<{ relname: string; b: string }>(
      `SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS b FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'collector_metrics'::regclass AND c.relname ~ '^collector_metrics_p[0-9]{8}$' ORDER BY 1`,
    );
    return Object.fromEntries(rows.map((r) => [r.relname, r.b]));
  } finally {
    await client.query('RESET TimeZone');
    client.release();
  }
}
const rightBound = (name: string) => {
  const d = `${name.slice(-8, -4)}-${name.slice(-4, -2)}-${name.slice(-2)}`;
  const next = new Date(Date.parse(`${d}T00:00:00Z`) + DAY).toISOString().slice(0, 10);
  return `FOR VALUES FROM ('${d} 00:00:00+00') TO ('${next} 00:00:00+00')`;
};
const wronglyBounded = async (pool: Pool) =>
  Object.entries(await bounds(pool))
    .filter(([name, b]) => b !== rightBound(name))
    .map(([name]) => name);

/** What a partition is made of (its name written P): what pga_create_metric_partition makes it. */
const shapeOf = async (pool: Pool, part: string) =>
  (
    await pool.query(
      `WITH p AS (SELECT $1::regclass AS oid)
       SELECT (SELECT json_build_object('owner', pg_get_userbyid(relowner), 'acl', relacl, 'options', reloptions,
                                        'persistence', relpersistence, 'kind', relkind, 'am', relam)
                 FROM pg_class WHERE oid = p.oid) AS rel,
              (SELECT json_agg(json_build_object('name', attname, 'type', atttypid, 'notnull', attnotnull, 'def', pg_get_expr(d.adbin, d.adrelid),
                                                 'storage', attstorage, 'compression', attcompression, 'local', attislocal, 'inh', attinhcount)
                               ORDER BY attnum)
                 FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                WHERE a.attrelid = p.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns,
              (SELECT json_agg(json_build_object('def', replace(pg_get_indexdef(x.indexrelid), $2, 'P'), 'name', replace(c.relname, $2, 'P'),
                                                 'parent', (SELECT inhparent::regclass::text FROM pg_inherits WHERE inhrelid = x.indexrelid))
                               ORDER BY c.relname)
                 FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid WHERE x.indrelid = p.oid) AS indexes,
              (SELECT json_agg(json_build_object('name', replace(conname, $2, 'P'), 'type', contype, 'def', pg_get_constraintdef(oid),
                                                 'local', conislocal, 'inh', coninhcount, 'parent', conparentid <> 0)
                               ORDER BY conname)
                 FROM pg_constraint WHERE conrelid = p.oid) AS constraints
         FROM p`,
      [part, part],
    )
  ).rows[0];

const relfilenodes = async (pool: Pool) =>
  (
    await pool.query<{ relname: string; relfilenode: string; xmin: string }>(
      `SELECT c.relname, c.relfilenode::text, c.xmin::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'collector_metrics'::regclass ORDER BY 1`,
    )
  ).rows;

/** A database migrated up to, not including, 0048 (the pre-0048 pga_create_metric_partition), and a pool on it. */
async function databaseBefore0048(): Promise<{ db: TestDatabase; pool: Pool }> {
  const db = await createTestDatabase({ migrated: false });
  const pool = createPool(db.url, { max: 3 });
  const dir = migrationsBefore('0048');
  try {
    await runMigrations(pool, dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return { db, pool };
}

describe('0049 on an installation whose partitions were bounded off their UTC day before 0048', () => {
  let db: TestDatabase;
  let pool: Pool;
  let before: { n: number; h: string };

  beforeAll(async () => {
    ({ db, pool } = await databaseBefore0048());
    // Rows waiting in DEFAULT before the partitions are made (moved in by the old function, by its bounds).
    await insertRows(pool, 18, 31, 53);
    await insertRows(pool, 37, 45, 53);
    await insertRows(pool, 48, 54, 53);
    // Asia/Kolkata, 'IST' read back as +02:00: 3.5 h late. The day before is bounded right (an ISO
    // session): its day's first 3.5 h after it went to DEFAULT.
    await createIn(pool, 'UTC', 'ISO, MDY', [19]);
    await createIn(pool, 'Asia/Kolkata', 'Postgres, DMY', [20, 21, 22, 23, 24, 25, 26, 27]);
    // A zone 'IST' at +01:00 read back as +02:00: 1 h early. The day after is bounded right: the
    // last hour of the misbounded one's day went to DEFAULT; the day before has no partition.
    await createIn(pool, 'IST-1', 'SQL, DMY', [40, 41, 42]);
    await createIn(pool, 'UTC', 'ISO, MDY', [43]);
    // 'CST' at +08:00 (China) read back as -06:00 (US Central): 14 h late.
    await createIn(pool, 'CST-8', 'German', [50, 51]);
    // Rows that came in since, routed by those bounds.
    await insertRows(pool, 18, 31, 17);
    await insertRows(pool, 37, 45, 17);
    await insertRows(pool, 48, 54, 17);
    before = await checksum(pool);
  });
  afterAll(async () => {
    await pool.end();
    await db.drop();
  });

  it('before 0049: bounds off their day, rows outside their day, the next day fails with 42P17 naming the partition in the way', async () => {
    const b = await bounds(pool);
    expect(b[nameOf(20)]).toBe(`FOR VALUES FROM ('${dayOf(20)} 03:30:00+00') TO ('${dayOf(21)} 03:30:00+00')`);
    expect(b[nameOf(40)]).toBe(`FOR VALUES FROM ('${dayOf(39)} 23:00:00+00') TO ('${dayOf(40)} 23:00:00+00')`);
    expect(b[nameOf(50)]).toBe(`FOR VALUES FROM ('${dayOf(50)} 14:00:00+00') TO ('${dayOf(51)} 14:00:00+00')`);
    expect(await wronglyBounded(pool)).toHaveLength(13);
    expect(await misplaced(pool)).toBeGreaterThan(0);

    // 0048: new days bounded right, and so day +28 overlaps +27 (maintenance of this release, which
    // cannot repair before 0049, says where to look).
    const dir = migrationsBefore('0049');
    try {
      expect((await runMigrations(pool, dir)).applied).toEqual(['0048_partition_bounds_in_any_date_style.sql']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const err = (await maintainPartitions(pool, { daysAhead: 28 }).catch((e: unknown) => e)) as Error & { code?: string };
    expect(err.code).toBe('42P17');
    expect(err.message).toContain(`partition "${nameOf(28)}" would overlap partition "${nameOf(27)}"`);
    expect(err.message).toContain('pga_repair_metric_partition_bounds()');
    expect(await checksum(pool)).toEqual(before);
  });

  it('0049 bounds every partition to its UTC day, puts every row in the partition of its day, and loses or duplicates none', async () => {
    const shapeBefore = await shapeOf(pool, nameOf(21));
    const { applied } = await runMigrations(pool, MIGRATIONS_DIR);
    // 0049 and the migrations released after it (none of which touch the partitions' bounds).
    expect(applied).toEqual(migrationsFrom('0049_'));

    expect(await wronglyBounded(pool)).toEqual([]);
    expect(await misplaced(pool)).toBe(0);
    expect(await checksum(pool)).toEqual(before);
    const names = Object.keys(await bounds(pool));
    // The days rows were moved out to: +28 (after Kolkata's last), +39 (before IST-1's first), +52.
    for (const d of [19, 20, 27, 28, 39, 40, 42, 43, 50, 51, 52]) expect(names).toContain(nameOf(d));
    // DEFAULT keeps only rows whose day has no partition.
    const { rows } = await pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM collector_metrics_default m
        WHERE to_regclass('collector_metrics_p' || to_char(m.received_at AT TIME ZONE 'UTC', 'YYYYMMDD')) IS NOT NULL`,
    );
    expect(rows[0]!.n).toBe(0);
    // A re-bounded partition is the table pga_create_metric_partition made, as it made it.
    expect(await shapeOf(pool, nameOf(21))).toEqual(shapeBefore);
  });

  it('the days after them are created; a repaired partition is made as a new one; rows route by the new bounds', async () => {
    const result = await maintainPartitions(pool, { daysAhead: 60 });
    expect(result.skipped).toEqual([]);
    expect(result.created).toContain(nameOf(29));
    expect(result.created).toContain(nameOf(44));
    expect(await wronglyBounded(pool)).toEqual([]);
    const normalize = (s: unknown) => JSON.parse(JSON.stringify(s)) as unknown;
    const fresh = normalize(await shapeOf(pool, nameOf(29)));
    for (const d of [20, 27, 28, 39, 40, 51, 52]) expect(normalize(await shapeOf(pool, nameOf(d)))).toEqual(fresh);

    const at = async (ms: number) =>
      (
        await pool.query<{ part: string }>(
          `INSERT INTO collector_metrics (collector_id, push_id, metric_type, metric_data, received_at)
           VALUES (gen_random_uuid(), gen_random_uuid(), 'pg_stats', '{}', $1) RETURNING tableoid::regclass::text AS part`,
          [new Date(ms).toISOString()],
        )
      ).rows[0]!.part;
    expect(await at(dayStart(21) + HOUR)).toBe(nameOf(21));
    expect(await at(dayStart(21) - 1)).toBe(nameOf(20));
    expect(await at(dayStart(40) + 23.5 * HOUR)).toBe(nameOf(40));
    expect(await at(dayStart(51) + 15 * HOUR)).toBe(nameOf(51));
  });

  it('runs again as a no-op: the migrations apply nothing, the repair finds nothing and rewrites nothing', async () => {
    const tables = await relfilenodes(pool);
    const sum = await checksum(pool);
    expect((await runMigrations(pool, MIGRATIONS_DIR)).applied).toEqual([]);
    expect((await pool.query('SELECT * FROM pga_repair_metric_partition_bounds()')).rows).toEqual([]);
    await migrateDatabase(db.url);
    expect(await relfilenodes(pool)).toEqual(tables);
    expect(await checksum(pool)).toEqual(sum);
  });
});

describe('0049 while collector_metrics is in use', () => {
  let db: TestDatabase;
  let pool: Pool;

  beforeAll(async () => {
    ({ db, pool } = await databaseBefore0048());
    await createIn(pool, 'Asia/Kolkata', 'Postgres, DMY', [10, 11, 12, 13]);
    await insertRows(pool, 9, 15, 30);
  });
  afterAll(async () => {
    await pool.end();
    await db.drop();
  });

  it('leaves the repair to maintenance rather than wait (or fail the start); maintenance creates no overlapping day meanwhile, and repairs once it gets the lock', async () => {
    const sum = await checksum(pool);
    const blocker = await pool.connect();
    try {
      // A long query on the metrics (ACCESS SHARE on collector_metrics and its partitions).
      await blocker.query('BEGIN');
      await blocker.query('SELECT count(*) FROM collector_metrics');
      // 0048, 0049: the repair gives up after 2 s with a warning; the start goes on.
      await migrateDatabase(db.url);
      const applied = await pool.query<{ version: string }>(
        "SELECT version FROM schema_migrations WHERE version >= '0049_' ORDER BY 1",
      );
      expect(applied.rows.map((r) => r.version)).toEqual(migrationsFrom('0049_'));
      expect(await wronglyBounded(pool)).toHaveLength(4);
      const err = await maintainPartitions(pool, { daysAhead: 14, lockTimeout: '200ms' }).catch((e: unknown) => e);
      expect((err as { code?: string }).code).toBe('55P03');
      expect(Object.keys(await bounds(pool))).not.toContain(nameOf(14));
    } finally {
      await blocker.query('ROLLBACK');
      blocker.release();
    }
    const result = await maintainPartitions(pool, { daysAhead: 14 });
    expect(result.skipped).toEqual([]);
    expect(result.created).toContain(nameOf(14));
    expect(await wronglyBounded(pool)).toEqual([]);
    expect(await misplaced(pool)).toBe(0);
    expect(await checksum(pool)).toEqual(sum);
  });
});

describe('0049 on a healthy installation', () => {
  it('changes nothing and waits for no lock on collector_metrics (nor for a COPY in flight)', async () => {
    await using db = await createTestDatabase();
    const pool = createPool(db.url, { max: 2 });
    try {
      await maintainPartitions(pool, { daysAhead: 10 });
      await insertRows(pool, -1, 10, 45);
      const tables = await relfilenodes(pool);
      const sum = await checksum(pool);
      const blocker = await pool.connect();
      try {
        // Conflicts with every lock but a SELECT's (ACCESS SHARE): with what DETACH would need too.
        await blocker.query('BEGIN');
        await blocker.query('LOCK TABLE collector_metrics IN EXCLUSIVE MODE');
        const client = await pool.connect();
        try {
          await client.query("SET lock_timeout = '100ms'");
          await client.query("SET TimeZone = 'Asia/Kolkata'");
          await client.query("SET DateStyle = 'Postgres, DMY'");
          expect((await client.query('SELECT * FROM pga_repair_metric_partition_bounds()')).rows).toEqual([]);
          await expect(
            client.query('DO $$ BEGIN LOCK TABLE collector_metrics IN ACCESS EXCLUSIVE MODE; END $$'),
          ).rejects.toMatchObject({
            code: '55P03',
          });
        } finally {
          await client.query('RESET ALL');
          client.release();
        }
      } finally {
        await blocker.query('ROLLBACK');
        blocker.release();
      }
      expect(await relfilenodes(pool)).toEqual(tables);
      expect(await checksum(pool)).toEqual(sum);
      expect(await wronglyBounded(pool)).toEqual([]);
    } finally {
      await pool.end();
    }
  });
  it('waits for no lock on a single day partition (a VACUUM FULL, CLUSTER or TRUNCATE of one day)', async () => {
    await using db = await createTestDatabase();
    const pool = createPool(db.url, { max: 2 });
    try {
      await maintainPartitions(pool, { daysAhead: 3 });
      const { rows } = await pool.query<{ relname: string }>(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'collector_metrics'::regclass AND c.relname ~ '^collector_metrics_p[0-9]{8}$' ORDER BY 1 LIMIT 1",
      );
      const day = rows[0]!.relname;
      const blocker = await pool.connect();
      try {
        await blocker.query('BEGIN');
        await blocker.query(`LOCK TABLE ${day} IN ACCESS EXCLUSIVE MODE`);
        const client = await pool.connect();
        try {
          await client.query("SET lock_timeout = '200ms'");
          expect((await client.query('SELECT * FROM pga_repair_metric_partition_bounds()')).rows).toEqual([]);
        } finally {
          await client.query('RESET ALL');
          client.release();
        }
      } finally {
        await blocker.query('ROLLBACK');
        blocker.release();
      }
    } finally {
      await pool.end();
    }
  });
});
