/**
 * PostgreSQL's CPU and WAL per push, statement by statement, of the writer's batch transaction (not a
 * test; figures go to the README): run with
 *   node --import tsx services/writer/bench/pg-phase-cost.ts [pushesPerBatch] [batches] [rounds]
 * Starts its own PostgreSQL (fsync on, like bench/), registers 1,000 collectors, and stores the bench
 * suite's 2 KB envelopes (collector k mod 1,000 for push k, as the bench sends them) with the writer's
 * own `storeBatch`, one batch at a time on one connection, folding the rollup every `foldEvery`
 * batches (as WRITER_ROLLUP_FOLD_MS does). Every statement's share is the on-CPU time of the session's
 * backend (`/proc/<pid>/schedstat`, nanoseconds) from the statement's start to the next one's, and
 * its WAL (pg_stat_statements' wal_bytes); the checkpointer, WAL writer and the other background processes are
 * counted apart. A CHECKPOINT precedes each round, as bench/ does before every run, so full-page
 * images are counted as they fall after one. Each round then stores the same pushes as a bare COPY
 * on the same connection (into emptied tables, after another CHECKPOINT) for reference.
 *
 * PG_PHASE_SQL runs after the migrations (an index or storage change to try out). With PG_PHASE_SQL_B
 * rounds alternate A and B on one server: B's SQL runs before each odd round, PG_PHASE_SQL_A (which
 * undoes it) before each even round after the first.
 */
import { rmSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { from as copyFrom } from 'pg-copy-streams';
import { createPool, migrateDatabase } from '@pga/db';
import { freePort, startPostgres } from '@pga/local-stack';
import { makeBodyPool } from '../../../bench/src/load/payloads';
import { copyRows } from '../src/copy-rows';
import { preparePush } from '../src/prepare-push';
import { COPY_METRICS, FOLD_ROLLUP } from '../src/sql';
import { storeBatch } from '../src/store-batch';
import { pushItems } from './push-items';
import { perPush, postgresCpuByRole, statementSpans, walByStatement, cpuNs } from './statement-cost';

const PER_BATCH = Number(process.argv[2] ?? 1_000);
const BATCHES = Number(process.argv[3] ?? 20);
const ROUNDS = Number(process.argv[4] ?? 2);
const FOLD_EVERY = Number(process.env.PG_PHASE_FOLD_EVERY ?? 5);
const root = path.resolve(import.meta.dirname, '../../..');
const dir = path.join(root, '.data', `pg-phase-cost-${process.pid}`);

mkdirSync(dir, { recursive: true });
const pg = await startPostgres({ dataDir: path.join(dir, 'pg'), port: await freePort() });
try {
  const admin = createPool(pg.url, { max: 1 });
  await admin.query('CREATE DATABASE pc');
  await admin.end();
  const url = pg.urlFor('pc');
  await migrateDatabase(url);
  const side = createPool(url, { max: 1 });
  await side.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
  if (process.env.PG_PHASE_SQL) await side.query(process.env.PG_PHASE_SQL);
  const { rows: cs } = await side.query<{ id: string }>(
    `INSERT INTO collectors (name, type, environment, host, database, username, password_encrypted, collection_interval, status)
     SELECT 'c-' || g, 'postgresql', 'production', 'db.local', 'app', 'u', 'x', 60, 'pending' FROM generate_series(1, 1000) g
     RETURNING id`,
  );
  await side.query('VACUUM ANALYZE collectors');
  const items = pushItems(
    makeBodyPool(42, '2k', 500),
    cs.map((r) => r.id),
  );
  const pool = createPool(url, { max: 1 });
  const walNow = async () => (await side.query<{ l: string }>('SELECT pg_current_wal_insert_lsn()::text AS l')).rows[0]!.l;
  const walSince = async (lsn: string) =>
    (await side.query<{ b: number }>('SELECT (pg_current_wal_insert_lsn() - $1::pg_lsn)::float8 AS b', [lsn])).rows[0]!.b;

  const { backend, spans, close, measure, reinstrument } = await statementSpans(pool);

  const rounds: Record<string, number>[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const variant = process.env.PG_PHASE_SQL_B ? (round % 2 === 0 ? 'A' : 'B') : 'A';
    await side.query(
      'TRUNCATE collector_metrics, ingest_ledger, collector_metrics_rollup, collector_metrics_rollup_batch, collector_push_minutes',
    );
    if (process.env.PG_PHASE_SQL_B && variant === 'B') await side.query(process.env.PG_PHASE_SQL_B);
    if (process.env.PG_PHASE_SQL_A && variant === 'A' && round > 0) await side.query(process.env.PG_PHASE_SQL_A);
    await side.query('CHECKPOINT');
    spans.clear();
    await side.query('SELECT pg_stat_statements_reset()');
    const all = items(PER_BATCH * BATCHES).map((p) => preparePush(p));
    const bg0 = postgresCpuByRole(pg.pid, backend);
    const walTotal0 = await walNow();
    measure(true);
    for (let b = 0; b < BATCHES; b++) {
      await reinstrument();
      await storeBatch(pool, all.slice(b * PER_BATCH, (b + 1) * PER_BATCH), { retentionDays: 14 });
      if ((b + 1) % FOLD_EVERY === 0 || b === BATCHES - 1) await pool.query(FOLD_ROLLUP);
      close();
    }
    measure(false);
    const walTotal = await walSince(walTotal0);
    const bg1 = postgresCpuByRole(pg.pid, backend);
    const n = PER_BATCH * BATCHES;
    const out = perPush(n, spans, await walByStatement(side), { before: bg0, after: bg1 });
    out['WAL B'] = Math.round(walTotal / n);

    // The same pushes' rows as one bare COPY, into emptied tables after a CHECKPOINT.
    await side.query(
      'TRUNCATE collector_metrics, ingest_ledger, collector_metrics_rollup, collector_metrics_rollup_batch, collector_push_minutes',
    );
    await side.query('CHECKPOINT');
    {
      const c = await pool.connect();
      const ns0 = cpuNs(backend);
      const lsn = await walNow();
      await pipeline(Readable.from(copyRows(all, { processedAtIso: new Date().toISOString() })), c.query(copyFrom(COPY_METRICS)));
      out['bare COPY µs'] = +((cpuNs(backend) - ns0) / 1000 / n).toFixed(1);
      out['bare COPY WAL B'] = Math.round((await walSince(lsn)) / n);
      c.release();
    }
    console.log(`round ${round + 1} (${variant})`, out);
    rounds.push({ variant: variant === 'A' ? 0 : 1, ...out });
  }
  const keys = Object.keys(rounds[0]!).filter((k) => k !== 'variant');
  for (const v of process.env.PG_PHASE_SQL_B ? [0, 1] : [0]) {
    const rs = rounds.filter((r) => r.variant === v);
    const med = (k: string) => {
      const xs = rs.map((r) => r[k] ?? 0).sort((a, b) => a - b);
      return xs[Math.floor(xs.length / 2)]!;
    };
    console.log(`median of ${rs.length} (${v ? 'B' : 'A'})`, Object.fromEntries(keys.map((k) => [k, med(k)])));
  }
  await pool.end();
  await side.end();
} finally {
  await pg.stop();
  rmSync(dir, { recursive: true, force: true });
}
