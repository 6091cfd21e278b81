/**
 * PostgreSQL's cost per push of the writer's batch transaction against a LARGE ingest_ledger (not a
 * test; a production-sizing measurement): run with
 *   LS_DIR=.data/ledger-size LS_LEDGER_ROWS=5000000 node --import tsx services/writer/bench/ledger-size-cost.ts
 * Unlike pg-phase-cost.ts (which TRUNCATEs the ledger before every round) the cluster in LS_DIR is
 * kept between runs and the ledger is topped up to LS_LEDGER_ROWS random-UUID entries (received_at
 * spread over the last 14 days, inserted in random key order so the B-tree has the leaf fill of a
 * production index) before the rounds. LS_METRIC_ROWS_PER_GROUP (default 0) pre-fills today's
 * collector_metrics partition with that many rows per (collector, metric type).
 * Each round: CHECKPOINT, then LS_PUSHES pushes (default 5,000: 1,000 collectors pushing once a
 * minute for one checkpoint_timeout of 5 min) in batches of LS_PER_BATCH (default 50) via the writer's
 * own storeBatch. Reported per push: backend CPU µs (schedstat) per statement, WAL bytes and full-page
 * images per statement (pg_stat_statements wal_bytes / wal_fpi), WAL and FPI in total (pg_stat_wal),
 * background processes' CPU, wall ms. LS_SETTINGS (JSON) adds server settings (e.g. shared_buffers).
 *
 * Measured 2026-12-07 (PG 15.18, local-stack settings: shared_buffers 256MB, checkpoint_timeout 5min,
 * wal_compression off; 2 KB pushes, 4 rows each; 5,000 pushes per checkpoint; medians of 3 rounds).
 * The ledger statement per push:
 *   ledger rows   pkey     ledger WAL B   ledger FPI   ledger CPU µs
 *   0             8 kB        345          0.005        35
 *   5 M           192 MB    5,825          0.91         38
 *   20 M          770 MB    6,229          0.99         51 (70–86 in other runs; noisy host)
 *   20 M, 15,000 pushes per checkpoint: 5,914 B, 0.94 FPI; shared_buffers 1GB: 6,266 B, 0.99 FPI;
 *   wal_compression=lz4: 5,908 B; pglz: 6,223 B (random UUID leaves barely compress).
 * Whole transaction: 6.6 kB WAL per push at 0 rows, 13–14 kB at 20 M. Separately, today's
 * collector_metrics partition pre-filled with 120 rows per collector and type (2 h of a day)
 * makes the COPY cost 0.8 FPI and 8.9 kB WAL per push (4.0 kB on an empty partition): lz4 5.5 kB,
 * 15,000 pushes per checkpoint 5.7 kB.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { createPool, migrateDatabase } from '@pga/db';
import { startPostgres } from '@pga/local-stack';
import { makeBodyPool } from '../../../bench/src/load/payloads';
import { preparePush } from '../src/prepare-push';
import { FOLD_ROLLUP } from '../src/sql';
import { storeBatch } from '../src/store-batch';
import { pushItems } from './push-items';
import { perPush, postgresCpuByRole, statementSpans, walByStatement } from './statement-cost';

const root = path.resolve(import.meta.dirname, '../../..');
const dir = path.resolve(root, process.env.LS_DIR ?? '.data/ledger-size');
const PORT = Number(process.env.LS_PORT ?? 26100);
const TARGET = Number(process.env.LS_LEDGER_ROWS ?? 0);
const PUSHES = Number(process.env.LS_PUSHES ?? 5_000);
const PER_BATCH = Number(process.env.LS_PER_BATCH ?? 50);
const ROUNDS = Number(process.env.LS_ROUNDS ?? 3);
const METRIC_ROWS_PER_GROUP = Number(process.env.LS_METRIC_ROWS_PER_GROUP ?? 0);
const FOLD_EVERY = 20;
const settings = JSON.parse(process.env.LS_SETTINGS ?? '{}') as Record<string, string>;

mkdirSync(dir, { recursive: true });
const pg = await startPostgres({ dataDir: path.join(dir, 'pg'), port: PORT, settings });
try {
  const admin = createPool(pg.url, { max: 1 });
  const exists = (await admin.query("SELECT 1 FROM pg_database WHERE datname = 'ls'")).rowCount === 1;
  if (!exists) await admin.query('CREATE DATABASE ls');
  await admin.end();
  const url = pg.urlFor('ls');
  await migrateDatabase(url);
  const side = createPool(url, { max: 1 });
  await side.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
  if (process.env.LS_SQL) await side.query(process.env.LS_SQL);
  const show = async (n: string) => (await side.query<{ v: string }>(`SELECT current_setting('${n}') AS v`)).rows[0]!.v;
  const conf = Object.fromEntries(
    await Promise.all(
      [
        'shared_buffers',
        'checkpoint_timeout',
        'max_wal_size',
        'wal_compression',
        'full_page_writes',
        'fsync',
        'synchronous_commit',
      ].map(async (n) => [n, await show(n)] as const),
    ),
  );
  let cs = (await side.query<{ id: string }>("SELECT id FROM collectors WHERE name LIKE 'c-%' ORDER BY name")).rows;
  if (cs.length === 0) {
    cs = (
      await side.query<{ id: string }>(
        `INSERT INTO collectors (name, type, environment, host, database, username, password_encrypted, collection_interval, status)
         SELECT 'c-' || g, 'postgresql', 'production', 'db.local', 'app', 'u', 'x', 60, 'pending' FROM generate_series(1, 1000) g
         RETURNING id`,
      )
    ).rows;
    await side.query('VACUUM ANALYZE collectors');
  }
  // Top the ledger up to TARGET rows, in chunks (random key order: gen_random_uuid()).
  let have = Number((await side.query<{ n: string }>('SELECT count(*) AS n FROM ingest_ledger')).rows[0]!.n);
  if (have < TARGET) {
    const t0 = performance.now();
    await side.query('SET synchronous_commit = off');
    const chunk = 1_000_000;
    while (have < TARGET) {
      const n = Math.min(chunk, TARGET - have);
      // received_at and committed_at spread over the 14 days before now, ascending with the
      // insert order inside each chunk does not matter for the B-tree on push_id.
      await side.query(
        `INSERT INTO ingest_ledger (push_id, collector_id, received_at, row_count, checksum, committed_at)
         SELECT gen_random_uuid(), $1::uuid, t, 11, md5(g::text) || md5((g + 1)::text), t
           FROM generate_series(1, $2::int) g, LATERAL (SELECT now() - random() * interval '14 days' AS t) x`,
        [cs[0]!.id, n],
      );
      have += n;
      console.log(`ledger ${have} rows (${Math.round((performance.now() - t0) / 1000)} s)`);
    }
    await side.query('RESET synchronous_commit');
    await side.query('VACUUM ANALYZE ingest_ledger');
  }
  const bodies = makeBodyPool(42, '2k', 500);
  const items = pushItems(
    bodies,
    cs.map((r) => r.id),
  );
  if (METRIC_ROWS_PER_GROUP > 0) {
    const today = Number(
      (
        await side.query<{ n: string }>(
          "SELECT count(*) AS n FROM collector_metrics WHERE received_at >= date_trunc('day', now())",
        )
      ).rows[0]!.n,
    );
    if (today === 0) {
      // METRIC_ROWS_PER_GROUP minutes of pushes of every collector, earlier today, through the COPY path.
      const t0 = performance.now();
      const day0 = new Date();
      day0.setUTCHours(0, 0, 0, 0);
      for (let m = 0; m < METRIC_ROWS_PER_GROUP; m++) {
        const at = new Date(day0.getTime() + m * 1000).toISOString();
        const batch = items(cs.length).map((p) => preparePush({ ...p, received_at: at }));
        for (let i = 0; i < batch.length; i += 500) await storeBatch(side, batch.slice(i, i + 500), { retentionDays: 14 });
      }
      await side.query(FOLD_ROLLUP);
      await side.query('VACUUM ANALYZE collector_metrics');
      console.log(`collector_metrics pre-filled (${Math.round((performance.now() - t0) / 1000)} s)`);
    }
  }
  const sizes = (
    await side.query<{ k: string; v: string }>(
      `SELECT 'ledger rows' AS k, (SELECT reltuples::bigint FROM pg_class WHERE relname = 'ingest_ledger')::text AS v
       UNION ALL SELECT 'ledger pkey', pg_size_pretty(pg_relation_size('ingest_ledger_pkey'))
       UNION ALL SELECT 'ledger heap', pg_size_pretty(pg_relation_size('ingest_ledger'))
       UNION ALL SELECT 'metrics rows today', (SELECT count(*) FROM collector_metrics WHERE received_at >= date_trunc('day', now()))::text`,
    )
  ).rows;
  console.log('config', conf, Object.fromEntries(sizes.map((r) => [r.k, r.v])));

  const pool = createPool(url, { max: 1 });
  const { backend, spans, close, measure, reinstrument } = await statementSpans(pool);
  const walStat = async () =>
    (
      await side.query<{ lsn: string; fpi: number }>(
        'SELECT pg_current_wal_insert_lsn()::text AS lsn, (SELECT wal_fpi FROM pg_stat_wal)::float8 AS fpi',
      )
    ).rows[0]!;
  const rounds: Record<string, number>[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    await side.query('CHECKPOINT');
    spans.clear();
    await side.query('SELECT pg_stat_statements_reset()');
    const all = items(PUSHES).map((p) => preparePush(p));
    const bg0 = postgresCpuByRole(pg.pid, backend);
    const w0 = await walStat();
    const t0 = performance.now();
    measure(true);
    for (let b = 0; b * PER_BATCH < PUSHES; b++) {
      await reinstrument();
      await storeBatch(pool, all.slice(b * PER_BATCH, (b + 1) * PER_BATCH), { retentionDays: 14 });
      if ((b + 1) % FOLD_EVERY === 0) await pool.query(FOLD_ROLLUP);
      close();
    }
    measure(false);
    const wallMs = performance.now() - t0;
    const w1 = await walStat();
    const walTotal = Number(
      (await side.query<{ b: number }>('SELECT ($1::pg_lsn - $2::pg_lsn)::float8 AS b', [w1.lsn, w0.lsn])).rows[0]!.b,
    );
    const bg1 = postgresCpuByRole(pg.pid, backend);
    const n = PUSHES;
    const out = perPush(n, spans, await walByStatement(side), { before: bg0, after: bg1 }, { fpi: true });
    out['WAL B'] = Math.round(walTotal / n);
    out['FPI'] = +((w1.fpi - w0.fpi) / n).toFixed(3);
    out['wall µs'] = Math.round((wallMs * 1000) / n);
    console.log(`round ${round + 1}`, JSON.stringify(out));
    rounds.push(out);
  }
  const keys = Object.keys(rounds[0]!);
  const med = (k: string) => {
    const xs = rounds.map((r) => r[k] ?? 0).sort((a, b) => a - b);
    return xs[Math.floor(xs.length / 2)]!;
  };
  console.log(`RESULT ledger=${TARGET}`, JSON.stringify(Object.fromEntries(keys.map((k) => [k, med(k)]))));
  await pool.end();
  await side.end();
} finally {
  await pg.stop();
}
