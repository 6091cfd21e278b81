import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { expect, it } from 'vitest';
import { capturingLogger, createTestDatabase, type LogLine } from '../helpers';
import { startFailingDiskRedis } from '../edge/harness';
import { fixture, insertCollector, pushItem, startWriterHarness, waitUntil, writeHeartbeatReport } from './helpers';

const ELEMENTS = (JSON.parse(fixture) as { metrics: unknown[] }).metrics.length;

/**
 * Both disks full, as seen by hand on loop-sized filesystems (PostgreSQL's `could not extend file …:
 * No space left on device`, 53100; Redis's AOF write failing, then `MISCONF Errors writing to the
 * AOF file` for every write). PostgreSQL's full disk is simulated here by a trigger raising 53100 on
 * the ledger's insert; Redis's by its file-size limit (prlimit, as test/edge/redis-aof-failing.test.ts).
 *
 * The writer holds its jobs, retrying PostgreSQL; Redis then refuses the renewals of their locks
 * for longer than WRITER_LOCK_DURATION_MS. The locks are lost and the stalled check puts the jobs
 * back in the queue: harmless (the ledger skips the second delivery), but BullMQ says so as one
 * error per job at every renewal round and twice more per job as it ends, and the writer logged
 * each as a warning with a stack — 45,000 lines in five minutes for 2,048 held jobs. Now: one line
 * for the jobs whose lock was lost (writer_job_locks_lost_total), and every push stored once.
 */
it('PostgreSQL disk full, then Redis MISCONF past the lock duration: one line for the lost locks, every push stored once', async () => {
  const redis = await startFailingDiskRedis('writer-disk-full-redis', [
    '--save',
    '',
    '--appendonly',
    'yes',
    '--appendfsync',
    'everysec',
    '--maxmemory-policy',
    'noeviction',
  ]);
  const db = await createTestDatabase();
  const { logger, lines } = capturingLogger('writer-test');
  const h = await startWriterHarness(
    db.url,
    {
      REDIS_URL: redis.url,
      WRITER_LOCK_DURATION_MS: '1000',
      WRITER_STALLED_INTERVAL_MS: '500',
      WRITER_HEARTBEAT_FLUSH_MS: '60000',
    },
    logger,
  );
  try {
    await h.pool.query(`
      CREATE TABLE disk_full (since timestamptz);
      CREATE FUNCTION disk_full() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF EXISTS (SELECT FROM disk_full) THEN
          RAISE EXCEPTION 'could not extend file "base/16384/16575": No space left on device'
            USING ERRCODE = 'disk_full', HINT = 'Check free disk space.';
        END IF;
        RETURN NULL;
      END $$;
      CREATE TRIGGER disk_full BEFORE INSERT ON ingest_ledger FOR EACH STATEMENT EXECUTE FUNCTION disk_full();
      INSERT INTO disk_full VALUES (now());`);
    const collector = await insertCollector(h.pool);
    const pushes = Array.from({ length: 12 }, () => pushItem(fixture, collector));
    const ids = await Promise.all(pushes.map((p) => h.enqueue([p], { attempts: 1 })));
    const metric = async (name: string) =>
      Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(await (await fetch(`${h.url}/metrics`)).text())?.[1]);
    await waitUntil('the writer retries the full disk', async () => (await metric('writer_retries_total')) >= 2, 20_000, 100);
    await waitUntil('every job held', async () => (await metric('writer_in_flight_jobs')) === ids.length, 20_000, 100);
    // Why the writer retries, for PgaWriterRetrying: the push path's PostgreSQL errors by kind.
    const errors = [
      ...(await (await fetch(`${h.url}/metrics`)).text()).matchAll(/^writer_postgres_errors_total\{reason="(\w+)"\} (\S+)$/gm),
    ];
    expect(Object.fromEntries(errors.map(([, reason, n]) => [reason, Number(n) > 0]))).toEqual({
      disk_full: true,
      out_of_resources: false,
      unreachable: false,
      read_only: false,
      timeout: false,
      conflict: false,
      other: false,
    });

    // Redis's disk full: its next AOF write fails, and every write is refused (MISCONF) from then on.
    const aofDir = path.join(redis.dir, 'appendonlydir');
    redis.fsize(String(Math.max(...readdirSync(aofDir).map((f) => statSync(path.join(aofDir, f)).size)) + 512));
    await redis.admin.set('ballast', 'x'.repeat(4096)).catch(() => undefined);
    await waitUntil(
      'Redis refusing writes',
      async () => (await redis.admin.info('persistence')).includes('aof_last_write_status:err'),
      10_000,
    );
    // Past the lock duration and a stalled check or two: the locks are gone.
    await new Promise((r) => setTimeout(r, 3000));
    redis.fsize('unlimited');
    await waitUntil(
      'Redis writing again',
      async () => (await redis.admin.info('persistence')).includes('aof_last_write_status:ok'),
      10_000,
    );
    // Several more renewal rounds (every 250 ms) with the locks gone, PostgreSQL still full.
    await new Promise((r) => setTimeout(r, 2000));

    await h.pool.query('DELETE FROM disk_full');
    await waitUntil(
      'every push in the ledger and nothing held',
      async () => {
        const { rows } = await h.pool.query<{ n: number }>(
          'SELECT count(*)::int AS n FROM ingest_ledger WHERE push_id = ANY($1)',
          [pushes.map((p) => p.push_id)],
        );
        return rows[0]!.n === pushes.length && (await metric('writer_in_flight_jobs')) === 0;
      },
      30_000,
      200,
    );
    const { rows } = await h.pool.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM collector_metrics WHERE push_id = ANY($1) GROUP BY push_id',
      [pushes.map((p) => p.push_id)],
    );
    expect(rows.map((r) => r.n)).toEqual(pushes.map(() => ELEMENTS));
    expect(await h.queue.getFailedCount()).toBe(0);
    expect(await metric('writer_dead_letters_total')).toBe(0);

    // What was said: before, a warning with a stack per job and renewal round, and one or two per
    // job as it ended (280 lines for these 12 jobs).
    const said = lines.filter((l) => l.level >= 40).map((l) => l.msg);
    const errText = (l: LogLine) => (typeof l.err === 'string' ? l.err : (l.err as { message?: string } | undefined)?.message);
    expect(lines.filter((l) => l.msg === 'push worker error').map(errText)).toEqual([]);
    expect(said.filter((m) => /^lost the lock of \d+ held push jobs?:/.test(m)).length).toBeGreaterThanOrEqual(1);
    expect(said.length).toBeLessThan(25);
    // Counted once per delivery: every held job's lock was lost; a redelivered job whose lock is lost
    // again (the writer stalled past the 1 s lock duration on a loaded machine) is counted again, and
    // said again: the counter is what the lines said.
    const lost = await metric('writer_job_locks_lost_total');
    expect(lost).toBeGreaterThanOrEqual(ids.length);
    expect(
      lines.filter((l) => /^lost the lock of \d+ held push jobs?:/.test(l.msg)).reduce((n, l) => n + Number(l.jobs), 0),
    ).toBe(lost);
  } finally {
    await h.close();
    redis.stop();
    await db.drop();
  }
}, 120_000);

/**
 * The scheduled jobs while PostgreSQL's disk is full (53100, the trigger below on the tables they
 * write): the rollup fold every 5 s, the sweep, retention, the heartbeat flush every second. Each
 * failure was a warning with a stack and the statement's whole SQL (the error's `where`), for as long
 * as the disk stayed full (about 90 lines in 5 s at these intervals). Now: one line per task as it
 * starts failing, with the error in full, a summary a minute, and one line per task when it succeeds
 * again.
 */
it('PostgreSQL disk full under the maintenance jobs and the heartbeat flush: one line per task, and one when it works again', async () => {
  const db = await createTestDatabase();
  const { logger, lines } = capturingLogger('writer-test');
  const h = await startWriterHarness(
    db.url,
    {
      WRITER_ROLLUP_FOLD_MS: '200',
      WRITER_SWEEP_INTERVAL_MS: '300',
      WRITER_MAINTENANCE_INTERVAL_MS: '1000',
      WRITER_HEARTBEAT_FLUSH_MS: '200',
    },
    logger,
  );
  let beating: NodeJS.Timeout | undefined;
  try {
    const collector = await insertCollector(h.pool);
    await h.pool.query(`
      CREATE TABLE disk_full (since timestamptz);
      CREATE FUNCTION disk_full() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF EXISTS (SELECT FROM disk_full) THEN
          RAISE EXCEPTION 'could not extend file "base/16384/16575": No space left on device'
            USING ERRCODE = 'disk_full', HINT = 'Check free disk space.';
        END IF;
        RETURN NULL;
      END $$;
      CREATE TRIGGER disk_full BEFORE INSERT OR UPDATE OR DELETE ON collector_metrics_rollup
        FOR EACH STATEMENT EXECUTE FUNCTION disk_full();
      CREATE TRIGGER disk_full BEFORE INSERT OR UPDATE OR DELETE ON collectors
        FOR EACH STATEMENT EXECUTE FUNCTION disk_full();`);
    // Heartbeats keep arriving (the edges take them), so the flush has work every tick.
    beating = setInterval(() => void writeHeartbeatReport(h, collector, new Date(), 5).catch(() => undefined), 100);
    await waitUntil('a heartbeat flushed', async () => {
      const { rows } = await h.pool.query('SELECT last_heartbeat FROM collectors WHERE id = $1', [collector]);
      return rows[0]?.last_heartbeat != null;
    });
    const from = lines.length;
    await h.pool.query('INSERT INTO disk_full VALUES (now())');
    await new Promise((r) => setTimeout(r, 4000));
    const during = lines.slice(from).filter((l) => l.level >= 40);
    const runs = async (task: string) =>
      Number(
        new RegExp(`^writer_maintenance_runs_total\\{task="${task}",outcome="failed"\\} (\\S+)$`, 'm').exec(
          await (await fetch(`${h.url}/metrics`)).text(),
        )?.[1],
      );
    // It did fail, many times.
    expect(await runs('rollup')).toBeGreaterThanOrEqual(5);
    expect(await runs('sweep')).toBeGreaterThanOrEqual(3);
    const tasks = during.map((l) => l.task);
    expect([...new Set(tasks)].sort()).toEqual(
      [
        'heartbeat flush',
        'heartbeat flush before the inactivity sweep',
        'maintenance job partitions',
        'maintenance job rollup',
        'maintenance job sweep',
      ].sort(),
    );
    // One line each: the first failure, in full (SQLSTATE, hint and the statement's context).
    expect(tasks.length).toBe(new Set(tasks).size);
    for (const l of during) {
      expect(l.sqlstate).toBe('53100');
      expect(l.msg).toMatch(/ failed: PostgreSQL is out of disk space \(disk full\) \(SQLSTATE 53100\): could not extend file/);
      expect((l.err as { hint?: string }).hint).toBe('Check free disk space.');
    }
    expect(during.find((l) => l.task === 'maintenance job rollup')?.msg).toMatch(/^maintenance job rollup failed: /);

    await h.pool.query('DELETE FROM disk_full');
    const recovered = (task: string) =>
      lines.some((l) => l.level === 30 && l.task === task && / succeeded again after /.test(l.msg));
    await waitUntil(
      'every task working again',
      async () =>
        ['heartbeat flush', 'maintenance job rollup', 'maintenance job sweep', 'maintenance job partitions'].every(recovered),
      10_000,
      100,
    );
    expect(lines.find((l) => l.task === 'maintenance job rollup' && l.level === 30)?.msg).toMatch(
      /^maintenance job rollup succeeded again after [\d.]+ s of failing: PostgreSQL is out of disk space \(disk full\) \(\d+ failures\)$/,
    );
    expect(lines.slice(from).filter((l) => l.level >= 40 && !during.includes(l))).toEqual([]);
  } finally {
    clearInterval(beating);
    await h.close();
    await db.drop();
  }
}, 60_000);
