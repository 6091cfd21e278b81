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
import { readFileSync, readdirSync, rmSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { PoolClient } from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { createPool, migrateDatabase } from '@pga/db';
import { freePort, startPostgres } from '@pga/local-stack';
import { makeBodyPool } from '../../../bench/src/load/payloads';
import { copyRows } from '../src/copy-rows';
import { preparePush } from '../src/prepare-push';
import { COPY_METRICS, FOLD_ROLLUP } from '../src/sql';
import { storeBatch } from '../src/store-batch';
import { pushItems } from './push-items';

const PER_BATCH = Number(process.argv[2] ?? 1_000);
const BATCHES = Number(process.argv[3] ?? 20);
const ROUNDS = Number(process.argv[4] ?? 2);
const FOLD_EVERY = Number(process.env.PG_PHASE_FOLD_EVERY ?? 5);
const root = path.resolve(import.meta.dirname, '../../..');
const dir = path.join(root, '.data', `pg-phase-cost-${process.pid}`);

/** On-CPU nanoseconds of a process (schedstat's first field). */
const cpuNs = (pid: number) => Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]);

/** On-CPU ns of every process under PostgreSQL's postmaster but `exclude`, by process title. */
function others(postmaster: number, exclude: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === exclude) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid !== postmaster && Number(name) !== postmaster) continue;
      const title = readFileSync(`/proc/${name}/cmdline`, 'utf8')
        .split('\0')[0]!
        .replace(/^postgres: /, '');
      const role = Number(name) === postmaster ? 'postmaster' : title.replace(/ .*$/, '');
      out.set(role, (out.get(role) ?? 0) + cpuNs(Number(name)));
    } catch {
      // gone in between
    }
  }
  return out;
}

const label = (sql: string) => {
  const s = sql.replace(/\s+/g, ' ').trim();
  if (s.startsWith('COPY')) return 'COPY';
  if (s.includes('ingest_ledger')) return 'ledger';
  if (s.includes('collector_metrics_rollup_batch')) return 'rollup row';
  if (s.includes('UPDATE collectors')) return 'collectors update';
  if (s.includes('pga_fold_rollup_deltas')) return 'fold';
  return s.slice(0, 20);
};

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

  // Every statement of the pool's one connection opens a span and closes the one before it. The
  // session is idle at that moment (storeBatch awaits each statement), so the backend's CPU time
  // read then splits exactly; WAL per statement comes from pg_stat_statements (wal_bytes).
  const spans = new Map<string, { ns: number; calls: number }>();
  let open: { name: string; ns: number } | null = null;
  let backend = 0;
  const close = () => {
    if (!open) return;
    const s = spans.get(open.name) ?? { ns: 0, calls: 0 };
    s.ns += cpuNs(backend) - open.ns;
    s.calls++;
    spans.set(open.name, s);
    open = null;
  };
  const instrumented = new WeakSet<PoolClient>();
  const instrument = (client: PoolClient) => {
    if (instrumented.has(client)) return;
    instrumented.add(client);
    const query = client.query.bind(client) as (...a: unknown[]) => unknown;
    (client as unknown as { query: unknown }).query = (...args: unknown[]) => {
      if (measuring) {
        const q = args[0] as string | { text?: string };
        close();
        open = { name: label(typeof q === 'string' ? q : (q.text ?? 'COPY')), ns: cpuNs(backend) };
      }
      return query(...args);
    };
  };
  let measuring = false;
  {
    const c = await pool.connect();
    backend = (await c.query<{ p: number }>('SELECT pg_backend_pid() AS p')).rows[0]!.p;
    instrument(c);
    c.release();
  }

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
    const bg0 = others(pg.pid, backend);
    const walTotal0 = await walNow();
    measuring = true;
    for (let b = 0; b < BATCHES; b++) {
      const c = await pool.connect();
      instrument(c);
      c.release();
      await storeBatch(pool, all.slice(b * PER_BATCH, (b + 1) * PER_BATCH), { retentionDays: 14 });
      if ((b + 1) % FOLD_EVERY === 0 || b === BATCHES - 1) await pool.query(FOLD_ROLLUP);
      close();
    }
    measuring = false;
    const walTotal = await walSince(walTotal0);
    const bg1 = others(pg.pid, backend);
    const n = PER_BATCH * BATCHES;
    const out: Record<string, number> = {};
    let backendNs = 0;
    const { rows: stmts } = await side.query<{ query: string; wal: number }>(
      'SELECT query, wal_bytes::float8 AS wal FROM pg_stat_statements WHERE wal_bytes > 0',
    );
    const walOf = new Map<string, number>();
    for (const r of stmts) walOf.set(label(r.query), (walOf.get(label(r.query)) ?? 0) + r.wal);
    for (const [name, s] of spans) {
      out[`${name} µs`] = +(s.ns / 1000 / n).toFixed(1);
      if (walOf.has(name)) out[`${name} WAL B`] = Math.round(walOf.get(name)! / n);
      backendNs += s.ns;
    }
    out['backend µs'] = +(backendNs / 1000 / n).toFixed(1);
    for (const [role, ns] of bg1) {
      const d = (ns - (bg0.get(role) ?? 0)) / 1000 / n;
      if (d >= 0.05) out[`bg ${role} µs`] = +d.toFixed(1);
    }
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
