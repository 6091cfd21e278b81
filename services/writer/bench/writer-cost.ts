/**
 * CPU cost per push of the writer and of PostgreSQL (not a test; figures go to the README): run with
 *   node --import tsx services/writer/bench/writer-cost.ts [pushes] [pushesPerJob]
 * Starts its own PostgreSQL (fsync on, like bench/) and Redis (AOF on), registers 1,000 collectors,
 * and on the bench suite's 2 KB envelopes measures, from /proc (utime + stime of each process tree):
 *   1. a bare COPY of the pushes' rows on one connection (what copy-limit measures);
 *   2. the real writer (a child process, `WRITER_*` variables passed through) draining a paused,
 *      pre-filled queue of jobs of `pushesPerJob` pushes (the edge packs ~20–100), resumed once the
 *      writer is ready — so start-up is not counted.
 * Prints µs of CPU per push for the writer, PostgreSQL and Redis, pushes/s, and the top statements of
 * pg_stat_statements by execution time per push.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { from as copyFrom } from 'pg-copy-streams';
import { createPool, migrateDatabase } from '@pga/db';
import { freePort, startPostgres, startRedis } from '@pga/local-stack';
import { redisKeys } from '@pga/redis-keys';
import { makeBodyPool } from '../../../bench/src/load/payloads';
import { pushItems } from './push-items';
import { copyRows } from '../src/copy-rows';
import { preparePush } from '../src/prepare-push';

const TOTAL = Number(process.argv[2] ?? 20_000);
const PER_JOB = Number(process.argv[3] ?? 22);
const root = path.resolve(import.meta.dirname, '../../..');
const dir = path.join(root, '.data', `writer-cost-${process.pid}`);
const TICK_US = 1_000_000 / 100; // USER_HZ

/** CPU µs of a process and all its descendants (live ones, plus reaped children's totals). */
function treeCpuUs(rootPid: number): number {
  return [...treeCpuByRole(rootPid).values()].reduce((a, b) => a + b, 0);
}

/** treeCpuUs by process title (PostgreSQL: "client backend", "walwriter", "autovacuum worker" …). */
function treeCpuByRole(rootPid: number): Map<string, number> {
  const stats = new Map<number, { ppid: number; us: number; role: string }>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const text = readFileSync(`/proc/${name}/stat`, 'utf8');
      const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
      const ticks = Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
      const title = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0')[0] ?? '';
      const role = title.startsWith('postgres: ') ? title.slice(10).replace(/ .*\d+\.\d+\.\d+\.\d+.*$/, ' backend') : 'main';
      stats.set(Number(name), { ppid: Number(f[1]), us: ticks * TICK_US, role });
    } catch {
      // the process ended in between
    }
  }
  const byRole = new Map<string, number>();
  const visit = (pid: number) => {
    const s = stats.get(pid);
    if (s) byRole.set(s.role, (byRole.get(s.role) ?? 0) + s.us);
    for (const [child, c] of stats) if (c.ppid === pid) visit(child);
  };
  visit(rootPid);
  return byRole;
}

const roleDelta = (before: Map<string, number>, after: Map<string, number>, n: number) =>
  Object.fromEntries([...after].map(([k, v]) => [k, Math.round((v - (before.get(k) ?? 0)) / n)]).filter(([, v]) => v !== 0));

mkdirSync(dir, { recursive: true });
const pg = await startPostgres({ dataDir: path.join(dir, 'pg'), port: await freePort() });
const redisServer = await startRedis({ dataDir: path.join(dir, 'redis'), port: await freePort() });
let child: ReturnType<typeof spawn> | null = null;
try {
  const admin = createPool(pg.url, { max: 1 });
  await admin.query('CREATE DATABASE wc');
  await admin.end();
  const url = pg.urlFor('wc');
  await migrateDatabase(url);
  const pool = createPool(url, { max: 2 });
  await pool.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
  // Experiments: WC_SQL runs after the migrations (e.g. an index or storage change to try out).
  if (process.env.WC_SQL) await pool.query(process.env.WC_SQL);
  const { rows: cs } = await pool.query<{ id: string }>(
    `INSERT INTO collectors (name, type, environment, host, database, username, password_encrypted, collection_interval, status)
     SELECT 'c-' || g, 'postgresql', 'production', 'db.local', 'app', 'u', 'x', 60, 'pending' FROM generate_series(1, 1000) g
     RETURNING id`,
  );
  const collectors = cs.map((r) => r.id);
  const bodies = makeBodyPool(42, '2k', 500);
  const items = pushItems(bodies, collectors);
  const per = (us: number) => Math.round(us / TOTAL);

  // 1. bare COPY on one connection
  {
    const prepared = items(TOTAL).map((p) => preparePush(p));
    const client = await pool.connect();
    const lsn = (await client.query<{ l: string }>('SELECT pg_current_wal_lsn()::text AS l')).rows[0]!.l;
    const cpu0 = treeCpuUs(pg.pid);
    const roles0 = treeCpuByRole(pg.pid);
    const t = performance.now();
    await pipeline(
      Readable.from(copyRows(prepared, { processedAtIso: new Date().toISOString() })),
      client.query(
        copyFrom(`COPY collector_metrics (collector_id, push_id, metric_type, database_name, metric_data, received_at, record_count, checksum, processed, processed_at)
          FROM STDIN`),
      ),
    );
    const ms = performance.now() - t;
    const cpu = treeCpuUs(pg.pid) - cpu0;
    const { rows: wal } = await client.query<{ b: number }>('SELECT (pg_current_wal_lsn() - $1::pg_lsn)::float8 AS b', [lsn]);
    client.release();
    console.log('bare COPY', {
      pushesPerS: Math.round((TOTAL / ms) * 1000),
      postgresUsPerPush: per(cpu),
      byProcess: roleDelta(roles0, treeCpuByRole(pg.pid), TOTAL),
      walBytesPerPush: Math.round(wal[0]!.b / TOTAL),
    });
  }

  // 2. the writer draining a pre-filled queue
  const prefix = 'wcost';
  const keys = redisKeys(prefix);
  const redis = new Redis(redisServer.url, { maxRetriesPerRequest: null });
  const queue = new Queue(keys.pushQueue, { connection: redis, prefix: keys.bullPrefix });
  await queue.pause();
  const raw = items(TOTAL);
  for (let i = 0; i < raw.length; i += PER_JOB * 50) {
    const jobs = [];
    for (let j = i; j < Math.min(raw.length, i + PER_JOB * 50); j += PER_JOB)
      jobs.push({ name: 'push', data: { v: 2, pushes: raw.slice(j, j + PER_JOB) }, opts: { removeOnComplete: { count: 200 } } });
    await queue.addBulk(jobs);
  }
  const opsPort = await freePort();
  const passed = Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('WRITER_')));
  child = spawn(
    process.execPath,
    [
      ...(process.env.WRITER_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.WRITER_PROF}`] : []),
      // Experiments: extra node flags for the writer (e.g. --heap-prof).
      ...(process.env.WC_NODE_FLAGS ? process.env.WC_NODE_FLAGS.split(' ') : []),
      '--import',
      'tsx',
      path.join(root, 'services/writer/src/main.ts'),
    ],
    {
      cwd: root,
      env: {
        PATH: process.env.PATH ?? '',
        DATABASE_URL: url,
        REDIS_URL: redisServer.url,
        REDIS_KEY_PREFIX: prefix,
        WRITER_PORT: String(opsPort),
        WRITER_MIGRATE: 'false',
        LOG_LEVEL: 'warn',
        ...passed,
      },
      stdio: ['ignore', 'inherit', 'inherit'],
    },
  );
  for (;;) {
    const ok = await fetch(`http://127.0.0.1:${opsPort}/readyz`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  await new Promise((r) => setTimeout(r, 500));
  await pool.query('SELECT pg_stat_statements_reset()');
  const lsn0 = (await pool.query<{ l: string }>('SELECT pg_current_wal_lsn()::text AS l')).rows[0]!.l;
  const w0 = treeCpuUs(child.pid!);
  const p0 = treeCpuUs(pg.pid);
  const roles0 = treeCpuByRole(pg.pid);
  const r0 = treeCpuUs(redisServer.pid);
  const t = performance.now();
  await queue.resume();
  // Polls Redis, not PostgreSQL (a count(*) every few ms would show up in PostgreSQL's CPU).
  for (;;) {
    const c = await queue.getJobCounts('wait', 'active', 'paused', 'prioritized');
    if (Object.values(c).every((n) => n === 0)) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  const ms = performance.now() - t;
  const stored = (await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM ingest_ledger')).rows[0]!.n;
  if (stored !== TOTAL) throw new Error(`ledger holds ${stored} pushes, expected ${TOTAL}`);
  const w = treeCpuUs(child.pid!) - w0;
  const p = treeCpuUs(pg.pid) - p0;
  const roles = roleDelta(roles0, treeCpuByRole(pg.pid), TOTAL);
  const r = treeCpuUs(redisServer.pid) - r0;
  console.log('writer', {
    pushesPerS: Math.round((TOTAL / ms) * 1000),
    writerUsPerPush: per(w),
    postgresUsPerPush: per(p),
    redisUsPerPush: per(r),
    postgresUsPerPushByProcess: roles,
    pushesPerJob: PER_JOB,
    settings: passed,
  });
  const { rows: wal } = await pool.query<{ b: number }>('SELECT (pg_current_wal_lsn() - $1::pg_lsn)::float8 AS b', [lsn0]);
  const { rows: tables } = await pool.query(
    `SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables
      WHERE relname IN ('collectors', 'ingest_ledger', 'collector_metrics_rollup_batch', 'collector_metrics_rollup') ORDER BY relname`,
  );
  console.log('WAL bytes per push', Math.round(wal[0]!.b / TOTAL), tables);
  const { rows: top } = await pool.query<{ query: string; calls: number; ms: number }>(
    `SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 70) AS query, calls::int, round(total_exec_time::numeric, 1)::float8 AS ms
       FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 8`,
  );
  for (const s of top)
    console.log(
      `${String(Math.round((s.ms * 1000) / TOTAL)).padStart(5)} µs/push ${String(s.calls).padStart(6)} calls  ${s.query}`,
    );
  const metrics = await (await fetch(`http://127.0.0.1:${opsPort}/metrics`)).text();
  const line = (name: string) => metrics.split('\n').find((l) => l.startsWith(name)) ?? `${name} ?`;
  console.log(line('writer_batches_total'), '|', line('writer_batch_rows_sum'), '|', line('writer_batch_jobs_sum'));
  child.kill('SIGTERM');
  await new Promise((res) => child!.once('exit', res));
  child = null;
  await queue.close();
  await redis.quit();
  await pool.end();
} finally {
  if (child) child.kill('SIGKILL');
  await redisServer.stop();
  await pg.stop();
  rmSync(dir, { recursive: true, force: true });
}
