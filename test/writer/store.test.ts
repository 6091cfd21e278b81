import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sweepPushBlobs } from '../../services/writer/src/push-blobs';
import { createTestDatabase, type TestDatabase } from '../helpers';
import { fixture, insertCollector, pushItem, sha256, startWriterHarness, waitUntil, type WriterHarness } from './helpers';

const parsedFixture = JSON.parse(fixture) as { metrics: { type: string; database?: string }[] };

describe('writer: pushes → collector_metrics', () => {
  let db: TestDatabase;
  let h: WriterHarness;

  beforeAll(async () => {
    db = await createTestDatabase();
    // The rollup fold runs only when a test asks (runNow): on its 5 s schedule it could fold a test's
    // deltas first, and 'folded by the job' would read 0 (a loaded CI machine did).
    h = await startWriterHarness(db.url, { WRITER_BATCH_WINDOW_MS: '30', WRITER_ROLLUP_FOLD_MS: '3600000' });
  });
  afterAll(async () => {
    await h?.close();
    await db?.drop();
  });

  it('stores one row per metric element, 64-bit integers exact, processed, with record_count and checksum', async () => {
    const collectorId = await insertCollector(h.pool);
    const item = pushItem(fixture, collectorId);
    const jobId = await h.enqueue([item]);
    await h.waitForJob(jobId, 'completed');

    const { rows } = await h.pool.query(
      `SELECT metric_type, database_name, metric_data::text AS data, record_count, checksum, processed, processed_at, received_at
         FROM collector_metrics WHERE push_id = $1 ORDER BY id`,
      [item.push_id],
    );
    expect(rows.map((r) => r.metric_type)).toEqual(parsedFixture.metrics.map((m) => m.type));
    expect(rows.map((r) => r.database_name)).toEqual(parsedFixture.metrics.map((m) => m.database ?? null));
    expect(new Set(rows.map((r) => r.checksum))).toEqual(new Set([sha256(fixture)]));
    expect(rows.every((r) => r.processed && r.processed_at)).toBe(true);
    expect(rows[0].received_at.toISOString()).toBe(item.received_at);
    expect(rows[1].record_count).toBe(3); // pg_stats appdb: 2 indexes + 1 table

    // The queryid-like `hash` beyond 2^53 reads back exactly (as text and as numeric).
    const { rows: q } = await h.pool.query(
      `SELECT (metric_data->'queries'->0->>'hash') AS hash, (metric_data->'queries'->0->'hash')::numeric::text AS num
         FROM collector_metrics WHERE push_id = $1 AND metric_type = 'pg_query_stats' AND database_name = 'postgres'`,
      [item.push_id],
    );
    expect(q[0]).toEqual({ hash: '-5266580654608644134', num: '-5266580654608644134' });

    const ledger = await h.pool.query('SELECT row_count, checksum FROM ingest_ledger WHERE push_id = $1', [item.push_id]);
    expect(ledger.rows).toEqual([{ row_count: parsedFixture.metrics.length, checksum: sha256(fixture) }]);
  });

  it('updates the collector (pending → active, counters) and the per-minute rollup (deltas, folded by a job)', async () => {
    const collectorId = await insertCollector(h.pool);
    const now = new Date();
    const jobId = await h.enqueue([pushItem(fixture, collectorId, now), pushItem(fixture, collectorId, now)]);
    await h.waitForJob(jobId, 'completed');
    const { rows } = await h.pool.query(
      'SELECT status, metrics_collected, success_count, last_collection_count, last_metric_at FROM collectors WHERE id = $1',
      [collectorId],
    );
    const n = parsedFixture.metrics.length;
    expect(rows[0]).toMatchObject({
      status: 'active',
      metrics_collected: String(2 * n),
      success_count: '2',
      last_collection_count: n,
    });
    expect(rows[0].last_metric_at.toISOString()).toBe(now.toISOString());

    // The batch committed its rollup as deltas (visible at once through the live view); the rollup
    // job folds them into collector_metrics_rollup.
    const live = await h.pool.query(
      'SELECT sum(row_count)::int AS n FROM collector_metrics_rollup_live WHERE collector_id = $1',
      [collectorId],
    );
    expect(live.rows[0].n).toBe(2 * n);
    const folded = (await h.writer.maintenance.runNow('rollup')) as { folded: number };
    expect(folded.folded).toBeGreaterThan(0);
    const pending = await h.pool.query(
      'SELECT count(*)::int AS n FROM collector_metrics_rollup_pending WHERE collector_id = $1',
      [collectorId],
    );
    expect(pending.rows[0].n).toBe(0);

    const rollup = await h.pool.query(
      `SELECT metric_type, row_count::int, record_count::int, calls::int, round(total_time_ms::numeric, 3)::float AS total,
              round(mean_time_ms::numeric, 6)::float AS mean
         FROM collector_metrics_rollup WHERE collector_id = $1 ORDER BY metric_type`,
      [collectorId],
    );
    const qs = rollup.rows.find((r) => r.metric_type === 'pg_query_stats');
    const queries = (JSON.parse(fixture).metrics as any[]).filter((m) => m.type === 'pg_query_stats').flatMap((m) => m.queries);
    // Cumulative counters: the minute holds one snapshot's (both pushes carry the same), summed over
    // its databases; rows add up.
    const calls = queries.reduce((a: number, q: any) => a + q.calls, 0);
    const total = queries.reduce((a: number, q: any) => a + q.total_time, 0);
    expect(qs.row_count).toBe(4);
    expect(qs.calls).toBe(calls);
    expect(qs.total).toBeCloseTo(total, 2);
    expect(qs.mean).toBeCloseTo(total / calls, 5);
    expect(rollup.rows.reduce((a, r) => a + r.row_count, 0)).toBe(2 * n);
  });

  it('pg_query_stats counters of a minute are its newest snapshot, whichever batch or fold brings it', async () => {
    const collectorId = await insertCollector(h.pool);
    const minute = Math.floor(Date.now() / 60_000) * 60_000 - 60_000;
    const snapshot = (a: number, b: number) =>
      JSON.stringify({
        metrics: [
          { type: 'pg_query_stats', database: 'a', queries: [{ calls: a, total_time: a / 10 }] },
          { type: 'pg_query_stats', database: 'b', queries: [{ calls: b, total_time: b / 10 }] },
        ],
      });
    const store = async (body: string, atMs: number) =>
      h.waitForJob(await h.enqueue([pushItem(body, collectorId, new Date(minute + atMs))]), 'completed');
    const cell = async (table: string) =>
      (
        await h.pool.query(
          `SELECT row_count::int, calls::int, total_time_ms AS total, round(mean_time_ms::numeric, 6)::float AS mean
             FROM ${table} WHERE collector_id = $1 AND metric_type = 'pg_query_stats'`,
          [collectorId],
        )
      ).rows;
    // The newer snapshot (0:40) is stored first, the older one (0:10, a backlog) after it.
    await store(snapshot(610, 400), 40_000);
    await store(snapshot(600, 400), 10_000);
    const newest = { row_count: 4, calls: 1010, total: 101, mean: 0.1 };
    expect(await cell('collector_metrics_rollup_live')).toEqual([newest]);
    await h.writer.maintenance.runNow('rollup');
    expect(await cell('collector_metrics_rollup')).toEqual([newest]);
    // An even older snapshot folded onto the stored cell does not replace it; a newer one does.
    await store(snapshot(500, 300), 5_000);
    await h.writer.maintenance.runNow('rollup');
    expect(await cell('collector_metrics_rollup')).toEqual([{ ...newest, row_count: 6 }]);
    await store(snapshot(700, 500), 50_000);
    expect(await cell('collector_metrics_rollup_live')).toEqual([{ row_count: 8, calls: 1200, total: 120, mean: 0.1 }]);
    await h.writer.maintenance.runNow('rollup');
    expect(await cell('collector_metrics_rollup')).toEqual([{ row_count: 8, calls: 1200, total: 120, mean: 0.1 }]);
  });

  it('stores a push whose pg_query_stats counters no bigint holds (calls 1e21, 1e400): its counters are unknown, not a dead letter', async () => {
    const collectorId = await insertCollector(h.pool);
    const body = (calls: string) =>
      `{"metrics":[{"type":"pg_query_stats","database":"a","queries":[{"calls":${calls},"total_time":5}]},{"type":"pg_cache","hit":1}]}`;
    for (const calls of ['1e21', '1e400', '9300000000000000000']) {
      const item = pushItem(body(calls), collectorId);
      await h.waitForJob(await h.enqueue([item]), 'completed');
      const rows = await h.pool.query('SELECT metric_type FROM collector_metrics WHERE push_id = $1 ORDER BY 1', [item.push_id]);
      expect({ calls, rows: rows.rows.map((r) => r.metric_type) }).toEqual({ calls, rows: ['pg_cache', 'pg_query_stats'] });
    }
    const cell = await h.pool.query(
      `SELECT row_count::int, calls, total_time_ms FROM collector_metrics_rollup_live
        WHERE collector_id = $1 AND metric_type = 'pg_query_stats'`,
      [collectorId],
    );
    expect(cell.rows).toEqual([{ row_count: 3, calls: null, total_time_ms: null }]);
  });

  it('keeps the newest push’s count when an older push commits later, and does not revive a deleted collector', async () => {
    const collectorId = await insertCollector(h.pool);
    const n = parsedFixture.metrics.length;
    await h.waitForJob(await h.enqueue([pushItem(fixture, collectorId, new Date())]), 'completed');
    // A push from an hour before (a backlog, a retried dead letter) with a single row, stored after.
    await h.waitForJob(
      await h.enqueue([pushItem('{"database":"app","calls":1}', collectorId, new Date(Date.now() - 3_600_000))]),
      'completed',
    );
    const row = async () =>
      (await h.pool.query('SELECT status, last_collection_count, metrics_collected FROM collectors WHERE id = $1', [collectorId]))
        .rows[0];
    expect(await row()).toMatchObject({ last_collection_count: n, metrics_collected: String(n + 1) });

    // In the recycle bin and swept inactive: a push accepted before the delete is stored, but the
    // collector stays as it is.
    await h.pool.query(`UPDATE collectors SET deleted_at = now(), status = 'inactive' WHERE id = $1`, [collectorId]);
    await h.waitForJob(await h.enqueue([pushItem(fixture, collectorId, new Date())]), 'completed');
    expect(await row()).toMatchObject({ status: 'inactive', metrics_collected: String(2 * n + 1) });
  });

  it('packs many jobs into few batches and stores a redelivered push exactly once', async () => {
    const collectorId = await insertCollector(h.pool);
    const items = Array.from({ length: 40 }, () => pushItem(fixture, collectorId));
    const batchesBefore = await metricValue(h, 'writer_batches_total');
    const ids = await Promise.all(items.map((i) => h.enqueue([i])));
    await Promise.all(ids.map((id) => h.waitForJob(id, 'completed')));
    const batches = (await metricValue(h, 'writer_batches_total')) - batchesBefore;
    expect(batches).toBeLessThanOrEqual(10);

    // The same pushes again (as a redelivery would carry them) store nothing.
    const again = await h.enqueue(items.slice(0, 5));
    await h.waitForJob(again, 'completed');
    const job = await h.queue.getJob(again);
    expect(job?.returnvalue).toEqual({ pushes: 5, stored: 0, duplicates: 5, expired: 0 });
    const { rows } = await h.pool.query(
      'SELECT push_id, count(*)::int AS n FROM collector_metrics WHERE collector_id = $1 GROUP BY push_id',
      [collectorId],
    );
    expect(rows).toHaveLength(items.length);
    expect(rows.every((r) => r.n === parsedFixture.metrics.length)).toBe(true);
    const c = await h.pool.query('SELECT success_count FROM collectors WHERE id = $1', [collectorId]);
    expect(c.rows[0].success_count).toBe(String(items.length));
  });

  it('stores a push id again when its new acceptance is beyond the edge’s replay window (CONTRACT.md: replays are within 24 h), not within it', async () => {
    const collectorId = await insertCollector(h.pool);
    const hoursAgo = (n: number) => new Date(Date.now() - n * 3_600_000).toISOString();
    const outcome = async (job: Promise<string>) => {
      const id = await job;
      await h.waitForJob(id, 'completed');
      return (await h.queue.getJob(id))?.returnvalue as { stored: number; duplicates: number };
    };
    const stored = async (pushId: string) =>
      (await h.pool.query('SELECT count(*)::int AS n FROM collector_metrics WHERE push_id = $1', [pushId])).rows[0].n /
      parsedFixture.metrics.length;

    // A collector whose push ids restart (say, from 1 after a reinstall) sends an id the ledger has
    // held since 26 h ago: the edge forgot it after 24 h and accepted it as new, so it is stored.
    const first = pushItem(fixture, collectorId, new Date(hoursAgo(26)));
    expect(await outcome(h.enqueue([first]))).toMatchObject({ stored: 1 });
    // Within the window (an edge took over a batch whose state expired): the same push, not stored.
    expect(await outcome(h.enqueue([{ ...first, received_at: hoursAgo(25) }]))).toMatchObject({ duplicates: 1 });
    const later = { ...first, received_at: new Date().toISOString() };
    expect(await outcome(h.enqueue([later]))).toMatchObject({ stored: 1 });
    // Its redelivery carries the same received_at: not stored again.
    expect(await outcome(h.enqueue([later]))).toMatchObject({ duplicates: 1 });
    expect(await stored(first.push_id)).toBe(2);

    // The window is the accepting edge's (IDEMPOTENCY_TTL_SECONDS, written into its jobs).
    const a = pushItem(fixture, collectorId, new Date(hoursAgo(2)));
    const b = pushItem(fixture, collectorId, new Date(hoursAgo(2)));
    await outcome(h.enqueue([a, b]));
    const now = new Date().toISOString();
    const oneHour = h.queue.add(
      'push',
      { v: 1, replay_window_s: 3600, pushes: [{ ...a, received_at: now }] },
      { removeOnComplete: false },
    );
    expect(await outcome(oneHour.then((j) => j.id!))).toMatchObject({ stored: 1 });
    expect(await outcome(h.enqueue([{ ...b, received_at: now }]))).toMatchObject({ duplicates: 1 }); // 24 h default
    expect([await stored(a.push_id), await stored(b.push_id)]).toEqual([2, 1]);
  });

  it('holds as many jobs as its batches can take: many small jobs share one batch, and the count follows the job size', async () => {
    const rowsPerPush = parsedFixture.metrics.length;
    // Small jobs: the budget (4 batches of 10,000 rows) allows far more than WRITER_CONCURRENCY,
    // so the writer holds that many, and 300 one-push jobs fit one or two batches (a fixed 16
    // held jobs would have needed at least 19). A 10 s window: under load the writer took more than
    // 3 s to take 300 jobs, and a third batch began (a holder of 16 still needs 19 whatever the window).
    const wide = await startWriterHarness(db.url, { WRITER_BATCH_WINDOW_MS: '10000', WRITER_CONCURRENCY: '1000' });
    try {
      await storeOnePushJobs(wide, 300);
      expect(await metricValue(wide, 'writer_job_concurrency')).toBe(1000);
      expect(await metricValue(wide, 'writer_batches_total')).toBeLessThanOrEqual(2);
      expect(await metricValue(wide, 'writer_pushes_stored_total')).toBe(300);
      expect(await metricValue(wide, 'writer_held_push_bytes')).toBe(0);
    } finally {
      await wide.close();
    }
    // Batches of two pushes' rows: the budget of 4 batches holds 8 one-push jobs.
    const narrow = await startWriterHarness(db.url, { WRITER_BATCH_MAX_ROWS: String(2 * rowsPerPush) });
    try {
      await storeOnePushJobs(narrow, 20);
      expect(await metricValue(narrow, 'writer_job_concurrency')).toBe(8);
      expect(await metricValue(narrow, 'writer_pushes_stored_total')).toBe(20);
    } finally {
      await narrow.close();
    }
  });

  it('stores a push that appears twice in one job (or batch) once', async () => {
    const item = pushItem(fixture);
    const jobId = await h.enqueue([item, { ...item }]);
    await h.waitForJob(jobId, 'completed');
    expect((await h.queue.getJob(jobId))?.returnvalue).toEqual({ pushes: 2, stored: 1, duplicates: 1, expired: 0 });
    const { rows } = await h.pool.query('SELECT count(*)::int AS n FROM collector_metrics WHERE push_id = $1', [item.push_id]);
    expect(rows[0].n).toBe(parsedFixture.metrics.length);
  });

  it('stores a push whose ids arrive in upper case (uuids are matched case-insensitively)', async () => {
    const item = pushItem(fixture);
    const jobId = await h.enqueue([
      { ...item, push_id: item.push_id.toUpperCase(), collector_id: item.collector_id.toUpperCase() },
    ]);
    await h.waitForJob(jobId, 'completed');
    const { rows } = await h.pool.query('SELECT count(*)::int AS n FROM collector_metrics WHERE push_id = $1', [item.push_id]);
    expect(rows[0].n).toBe(parsedFixture.metrics.length);
  });

  it('stores a flat push as one row and a body handed over as latin1 bytes as UTF-8', async () => {
    const flat = JSON.stringify({ database: 'app', query_count: 1234, avg_execution_time: 45.3, queries: [{ q: 'é' }] });
    const flatItem = pushItem(flat);
    const bytesAsLatin1 = Buffer.from(flat, 'utf8').toString('latin1');
    const latinItem = { ...pushItem(flat), body: bytesAsLatin1, checksum: sha256(Buffer.from(flat, 'utf8')) };
    const jobId = await h.enqueue([flatItem, latinItem]);
    await h.waitForJob(jobId, 'completed');
    const { rows } = await h.pool.query(
      `SELECT metric_type, database_name, record_count, metric_data->'queries'->0->>'q' AS q
         FROM collector_metrics WHERE push_id = ANY($1) ORDER BY push_id`,
      [[flatItem.push_id, latinItem.push_id]],
    );
    expect(rows).toEqual([
      { metric_type: 'flat', database_name: 'app', record_count: 1, q: 'é' },
      { metric_type: 'flat', database_name: 'app', record_count: 1, q: 'é' },
    ]);
  });

  it('dead-letters poison once (UnrecoverableError) and still stores the good pushes of the batch', async () => {
    const good = pushItem(fixture);
    const corrupt = { ...pushItem('{"metrics":[]}'), checksum: sha256('something else') };
    // Valid for the splitter, rejected by PostgreSQL's jsonb input (\u0000 is not storable): SQLSTATE 22P05.
    const nul = pushItem('{"metrics":[{"type":"pg_log","msg":"a\\u0000b"}]}');
    const goodAlone = pushItem(fixture);
    const [j1, j2, j3, j4] = await Promise.all([
      h.enqueue([corrupt], { attempts: 5 }),
      h.enqueue([good, nul], { attempts: 5 }),
      h.enqueue([goodAlone], { attempts: 5 }),
      h.enqueue([{ push_id: 'nope' } as any], { attempts: 5 }),
    ]);
    await h.waitForJob(j1!, 'failed');
    await h.waitForJob(j2!, 'failed');
    await h.waitForJob(j3!, 'completed');
    await h.waitForJob(j4!, 'failed');
    for (const id of [j1!, j2!, j4!]) {
      const job = await h.queue.getJob(id);
      expect(job?.attemptsMade, `job ${id} tried once`).toBe(1);
    }
    expect((await h.queue.getJob(j2!))?.failedReason).toContain(nul.push_id);
    const failed = await h.queue.getFailed();
    expect(failed.map((j) => j.id).sort()).toEqual([j1, j2, j4].sort());
    const stored = await h.pool.query('SELECT DISTINCT push_id FROM collector_metrics WHERE push_id = ANY($1)', [
      [good.push_id, nul.push_id, goodAlone.push_id, corrupt.push_id],
    ]);
    expect(stored.rows.map((r) => r.push_id).sort()).toEqual([good.push_id, goodAlone.push_id].sort());
    expect(await metricValue(h, 'writer_dead_letters_total')).toBe(3);

    // The admin API retries a dead letter through BullMQ: the good push is not stored twice.
    const job2 = await h.queue.getJob(j2!);
    await job2!.retry('failed');
    await h.waitForJob(j2!, 'failed');
    const count = await h.pool.query('SELECT count(*)::int AS n FROM collector_metrics WHERE push_id = $1', [good.push_id]);
    expect(count.rows[0].n).toBe(parsedFixture.metrics.length);
  });

  it('a job with a push that can never be stored still stores its other pushes, then fails once naming the bad one', async () => {
    const good = pushItem(fixture);
    const corrupt = { ...pushItem(fixture), checksum: sha256('something else') };
    const jobId = await h.enqueue([good, corrupt], { attempts: 5 });
    await h.waitForJob(jobId, 'failed');
    const job = await h.queue.getJob(jobId);
    expect(job?.attemptsMade).toBe(1);
    expect(job?.failedReason).toContain('1 of 2 pushes can never be stored');
    expect(job?.failedReason).toContain(`push ${corrupt.push_id}: body does not match its checksum`);
    const stored = await h.pool.query('SELECT DISTINCT push_id FROM collector_metrics WHERE push_id = ANY($1)', [
      [good.push_id, corrupt.push_id],
    ]);
    expect(stored.rows.map((r) => r.push_id)).toEqual([good.push_id]);
    // Retried from the dead letters: fails the same way, and the good push is not stored twice.
    await job!.retry('failed');
    await h.waitForJob(jobId, 'failed');
    expect((await h.queue.getJob(jobId))?.failedReason).toContain('1 already there');
    const count = await h.pool.query('SELECT count(*)::int AS n FROM collector_metrics WHERE push_id = $1', [good.push_id]);
    expect(count.rows[0].n).toBe(parsedFixture.metrics.length);
  });

  it("a trigger refusing one collector's rows fails only the jobs carrying them, retryably; the other pushes, in the same jobs too, are stored", async () => {
    const blocked = randomUUID();
    await h.pool.query(`CREATE FUNCTION pga_test_block() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.collector_id = '${blocked}' THEN RAISE EXCEPTION 'collector % is blocked', NEW.collector_id; END IF; RETURN NEW; END $$`);
    await h.pool.query(
      'CREATE TRIGGER pga_test_block BEFORE INSERT ON collector_metrics FOR EACH ROW EXECUTE FUNCTION pga_test_block()',
    );
    try {
      const [a, b, c] = [pushItem(fixture), pushItem(fixture), pushItem(fixture)];
      const refused = pushItem(fixture, blocked);
      // In one batch: before, the whole batch failed on every attempt (P0001 is no data error by
      // SQLSTATE), so no collector's pushes were stored and all of them ended in the dead letters.
      const [j1, j2, j3] = await Promise.all([
        h.enqueue([a], { attempts: 2 }),
        h.enqueue([b, refused], { attempts: 2 }),
        h.enqueue([c], { attempts: 2 }),
      ]);
      await h.waitForJob(j1!, 'completed');
      await h.waitForJob(j3!, 'completed');
      await h.waitForJob(j2!, 'failed');
      const job = await h.queue.getJob(j2!);
      expect(job?.attemptsMade).toBe(2); // retried, as a fatal error is: not dead-lettered at once as poison
      expect(job?.failedReason).toContain('is blocked');
      const ids = async () =>
        (
          await h.pool.query('SELECT push_id, count(*)::int AS n FROM collector_metrics WHERE push_id = ANY($1) GROUP BY 1', [
            [a.push_id, b.push_id, c.push_id, refused.push_id],
          ])
        ).rows.map((r) => `${r.push_id}:${r.n}`);
      const rows = parsedFixture.metrics.length;
      expect((await ids()).sort()).toEqual([a, b, c].map((p) => `${p.push_id}:${rows}`).sort());
      // The rule lifted, the dead letter retried: the refused push is stored, b is not stored twice.
      await h.pool.query('DROP TRIGGER pga_test_block ON collector_metrics');
      await job!.retry('failed');
      await h.waitForJob(j2!, 'completed');
      expect((await ids()).sort()).toEqual([a, b, c, refused].map((p) => `${p.push_id}:${rows}`).sort());
    } finally {
      await h.pool.query('DROP TRIGGER IF EXISTS pga_test_block ON collector_metrics');
      await h.pool.query('DROP FUNCTION IF EXISTS pga_test_block()');
    }
  });

  it('does not store again a dead letter retried after retention pruned its ledger entry (past retention), but stores a push within it', async () => {
    const collectorId = await insertCollector(h.pool);
    const n = parsedFixture.metrics.length;
    const daysAgo = (days: number) => new Date(Date.now() - days * 86_400_000);
    const state = async () =>
      (
        await h.pool.query(
          `SELECT c.metrics_collected, c.success_count,
                  (SELECT count(*)::int FROM collector_metrics m WHERE m.collector_id = c.id) AS rows,
                  (SELECT coalesce(sum(row_count), 0)::int FROM collector_metrics_rollup_live r WHERE r.collector_id = c.id) AS rollup
             FROM collectors c WHERE c.id = $1`,
          [collectorId],
        )
      ).rows[0];
    const inLedger = async (pushId: string) =>
      (await h.pool.query('SELECT 1 FROM ingest_ledger WHERE push_id = $1', [pushId])).rowCount === 1;

    // The scheduled retention run at start must not prune what is seeded below before the job runs.
    await waitUntil('first scheduled partitions run', async () =>
      /^writer_maintenance_runs_total\{task="partitions",outcome="ok"\} [1-9]/m.test(
        await (await fetch(`${h.url}/metrics`)).text(),
      ),
    );

    // Accepted and stored 15 days ago (retention 14): its ledger entry committed a minute later and the
    // collector counted it; its rows have since gone with their partition. Its job was dead-lettered
    // for a corrupt sibling push, and dead letters outlive the retention.
    const old = pushItem(fixture, collectorId, daysAgo(15));
    await h.pool.query(
      `INSERT INTO ingest_ledger (push_id, collector_id, received_at, row_count, checksum, committed_at)
       VALUES ($1, $2, $3, $4, $5, $3::timestamptz + interval '1 minute')`,
      [old.push_id, collectorId, old.received_at, n, old.checksum],
    );
    await h.pool.query(
      `UPDATE collectors SET status = 'active', metrics_collected = $2, success_count = 1, last_metric_at = $3 WHERE id = $1`,
      [collectorId, n, old.received_at],
    );
    const corrupt = { ...pushItem('{"metrics":[]}', collectorId), checksum: sha256('something else') };
    const jobId = await h.enqueue([old, corrupt], { attempts: 5 });
    await h.waitForJob(jobId, 'failed');
    const before = await state();
    expect(before).toMatchObject({ metrics_collected: String(n), success_count: '1', rows: 0 });

    // The hourly retention job prunes the ledger entry; then an admin retries the dead letter.
    await h.writer.maintenance.runNow('partitions');
    expect(await inLedger(old.push_id)).toBe(false);
    const expiredBefore = await metricValue(h, 'writer_pushes_expired_total');
    await (await h.queue.getJob(jobId))!.retry('failed');
    await h.waitForJob(jobId, 'failed');
    expect(await state()).toEqual(before);
    expect((await h.queue.getJob(jobId))?.failedReason).toContain('0 stored, 0 already there, 1 past retention');
    expect((await metricValue(h, 'writer_pushes_expired_total')) - expiredBefore).toBe(1);

    // 13 days old: within the retention, so stored (once).
    const recent = pushItem(fixture, collectorId, daysAgo(13));
    const recentJob = await h.enqueue([recent]);
    await h.waitForJob(recentJob, 'completed');
    expect((await h.queue.getJob(recentJob))?.returnvalue).toEqual({ pushes: 1, stored: 1, duplicates: 0, expired: 0 });
    expect(await state()).toMatchObject({ metrics_collected: String(2 * n), success_count: '2', rows: n });

    // Retention prunes a ledger entry only once its push is past the retention too: an edge whose
    // clock ran 10 minutes ahead of PostgreSQL's gave this push a received_at after its commit time,
    // and the retention's start (midnight UTC 14 days ago) falls between the two.
    let skewed: ReturnType<typeof pushItem>;
    for (;;) {
      const today = new Date().toISOString().slice(0, 10);
      const retentionStart = Date.parse(`${today}T00:00:00Z`) - 14 * 86_400_000;
      skewed = pushItem(fixture, collectorId, new Date(retentionStart + 5 * 60_000));
      await h.pool.query(
        `INSERT INTO ingest_ledger (push_id, collector_id, received_at, row_count, checksum, committed_at)
         VALUES ($1, $2, $3, $4, $5, $3::timestamptz - interval '10 minutes')`,
        [skewed.push_id, collectorId, skewed.received_at, n, skewed.checksum],
      );
      await h.writer.maintenance.runNow('partitions');
      // Midnight UTC passed meanwhile: the retention's start moved a day on; again, from the new date.
      if (new Date().toISOString().slice(0, 10) === today) break;
    }
    expect(await inLedger(skewed.push_id)).toBe(true);
    const redelivered = await h.enqueue([skewed]);
    await h.waitForJob(redelivered, 'completed');
    expect((await h.queue.getJob(redelivered))?.returnvalue).toMatchObject({ stored: 0, duplicates: 1 });
    expect(await state()).toMatchObject({ metrics_collected: String(2 * n), rows: n });
  });

  it('reads v2 jobs (bodies as base64, as the edge writes them): stored byte for byte; a body not matching its checksum is poison', async () => {
    const v2 = ({ body, ...rest }: ReturnType<typeof pushItem>) => ({
      ...rest,
      body_base64: Buffer.from(body).toString('base64'),
    });
    const good = pushItem(fixture);
    const bad = { ...v2(pushItem('{"metrics":[]}')), body_base64: Buffer.from('{"metrics":[1]}').toString('base64') };
    const options = { attempts: 5, removeOnComplete: false };
    const ok = await h.queue.add('push', { v: 2, pushes: [v2(good)] }, options);
    const poison = await h.queue.add('push', { v: 2, pushes: [bad] }, options);
    await h.waitForJob(ok.id!, 'completed');
    await h.waitForJob(poison.id!, 'failed');
    expect((await h.queue.getJob(poison.id!))?.failedReason).toContain('does not match its checksum');
    const { rows } = await h.pool.query('SELECT metric_data::text AS data, checksum FROM collector_metrics WHERE push_id = $1', [
      good.push_id,
    ]);
    expect(rows).toHaveLength(parsedFixture.metrics.length);
    expect(new Set(rows.map((r) => r.checksum))).toEqual(new Set([sha256(fixture)]));
    // 64-bit integers exact: every one in the fixture is in a stored row.
    const big = fixture.match(/-?\d{18,}/g) ?? [];
    expect(big.length).toBeGreaterThan(0);
    for (const n of big) expect(rows.some((r) => String(r.data).includes(n))).toBe(true);
  });

  const piece = 256 * 1024;
  /** A v3 job as the edge writes it: the body in `pieces` of a hash named after the job. */
  const addLarge = async (item: ReturnType<typeof pushItem>, bytes: Buffer = Buffer.from(item.body)) => {
    const jobId = `large-${randomUUID()}`;
    const key = h.keys.pushBlob(jobId);
    let pieces = 0;
    for (let at = 0; at < bytes.length; at += piece) await h.redis.hset(key, String(pieces++), bytes.subarray(at, at + piece));
    await h.redis.zadd(h.keys.pushBlobs, Date.now(), key);
    const { body: _body, ...rest } = item;
    const data = { v: 3, replay_window_s: 600, pushes: [{ ...rest, body_ref: { key, bytes: bytes.length, pieces } }] };
    await h.queue.add('push', data as never, { jobId, attempts: 5, removeOnComplete: true });
    return { jobId, key };
  };

  it('reads v3 jobs (a large push, its body in Redis in pieces): stored byte for byte, its body deleted once the job completed; a body gone or not matching is a dead letter', async () => {
    // ~1 MB: the fixture's metrics four hundred times over, 64-bit integers and all.
    const metrics = JSON.stringify(parsedFixture.metrics).slice(1, -1);
    const big = `{"metrics":[${Array.from({ length: 400 }, () => metrics).join(',')}]}`;
    expect(big.length).toBeGreaterThan(4 * piece);
    const good = pushItem(big);
    const stored = await addLarge(good);
    await waitUntil('large push stored', async () => {
      const { rows } = await h.pool.query('SELECT count(*)::int AS n FROM collector_metrics WHERE push_id = $1', [good.push_id]);
      return rows[0].n === 400 * parsedFixture.metrics.length;
    });
    const { rows } = await h.pool.query('SELECT DISTINCT checksum FROM collector_metrics WHERE push_id = $1', [good.push_id]);
    expect(rows).toEqual([{ checksum: sha256(big) }]);
    await waitUntil('its body deleted', async () => (await h.redis.exists(stored.key)) === 0);
    expect(await h.redis.zscore(h.keys.pushBlobs, stored.key)).toBeNull();

    // Its body gone from Redis (or cut short): the job fails once, naming the push and the key.
    const gone = pushItem('{"metrics":[]}');
    const missing = await addLarge(gone);
    await h.redis.del(missing.key);
    const cut = pushItem(big);
    const short = await addLarge(cut);
    await h.redis.hdel(short.key, '2');
    // Its body not the one the checksum names: a dead letter that keeps its body for a retry.
    const wrong = pushItem(big);
    const kept = await addLarge(wrong, Buffer.from(big.replace('"metrics"', '"metricz"')));
    for (const job of [missing, short, kept]) await h.waitForJob(job.jobId, 'failed');
    expect((await h.queue.getJob(missing.jobId))?.failedReason).toContain(
      `push ${gone.push_id}: its body is gone from Redis (key ${missing.key})`,
    );
    expect((await h.queue.getJob(short.jobId))?.failedReason).toContain(`push ${cut.push_id}: its body is incomplete in Redis`);
    expect((await h.queue.getJob(kept.jobId))?.failedReason).toContain('does not match its checksum');
    expect(await h.redis.exists(kept.key)).toBe(1);
    const none = await h.pool.query('SELECT count(*)::int AS n FROM collector_metrics WHERE push_id = ANY($1)', [
      [gone.push_id, cut.push_id, wrong.push_id],
    ]);
    expect(none.rows[0].n).toBe(0);
  });

  it('a row too large for jsonb to parse (an older edge let it through) is a dead letter at once (poison, not retried); a push beside it is stored', async () => {
    // An array of 2^24 + 1 numbers: PostgreSQL's parser asks palloc for 1 GiB (XX000), not a 54000.
    const huge = `{"metrics":[{"type":"t","v":[${'1,'.repeat(16_777_216)}1]}]}`;
    const bad = pushItem(huge);
    const good = pushItem(fixture);
    const large = await addLarge(bad);
    const ok = await h.enqueue([good]);
    await h.waitForJob(large.jobId, 'failed', 60_000);
    await h.waitForJob(ok, 'completed', 60_000);
    const failed = await h.queue.getJob(large.jobId);
    expect(failed?.failedReason).toContain('invalid memory alloc request size');
    expect(failed?.attemptsMade).toBe(1);
    const { rows } = await h.pool.query(
      'SELECT push_id, count(*)::int AS n FROM collector_metrics WHERE push_id = ANY($1) GROUP BY 1',
      [[bad.push_id, good.push_id]],
    );
    expect(rows).toEqual([{ push_id: good.push_id, n: parsedFixture.metrics.length }]);
  }, 90_000);

  it('the sweep deletes large-push bodies whose job is gone once past the grace, and keeps the rest', async () => {
    const sweep = (graceMs: number) =>
      sweepPushBlobs(h.redis, {
        index: h.keys.pushBlobs,
        blobPrefix: h.keys.pushBlob(''),
        jobKey: (id) => h.queue.toKey(id),
        graceMs,
      });
    const blob = async (jobId: string, at = Date.now() - 60_000) => {
      const key = h.keys.pushBlob(jobId);
      await h.redis.hset(key, '0', 'x');
      await h.redis.zadd(h.keys.pushBlobs, at, key);
      return key;
    };
    // A blob whose job is a dead letter (it exists), one whose job never came (an orphan), one
    // written just now (its job may be on its way), and an index entry whose blob is already gone.
    const dead = await h.queue.add('push', { v: 3 } as never, { jobId: `large-${randomUUID()}`, attempts: 1 });
    await h.waitForJob(dead.id!, 'failed');
    const kept = await blob(dead.id!);
    const orphan = await blob(`large-${randomUUID()}`);
    const young = await blob(`large-${randomUUID()}`, Date.now());
    const stale = h.keys.pushBlob(`large-${randomUUID()}`);
    await h.redis.zadd(h.keys.pushBlobs, Date.now() - 60_000, stale);
    // The gauges show them, and the oldest one's age (a minute).
    await h.writer.pushWorker.refreshGauges();
    const gauge = async (name: string) =>
      Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(await h.writer.metrics.registry.metrics())?.[1]);
    expect(await gauge('writer_push_blobs')).toBe(await h.redis.zcard(h.keys.pushBlobs));
    expect(await gauge('writer_push_blob_oldest_age_seconds')).toBeGreaterThanOrEqual(59);
    expect(await gauge('writer_push_blob_oldest_age_seconds')).toBeLessThan(120);
    expect(await sweep(30_000)).toBe(2);
    expect(await Promise.all([kept, orphan, young].map((k) => h.redis.exists(k)))).toEqual([1, 0, 1]);
    expect(await h.redis.zscore(h.keys.pushBlobs, stale)).toBeNull();
    // The dead letter removed (its age passed): its body goes at the next sweep.
    await h.queue.remove(dead.id!);
    expect(await sweep(30_000)).toBe(1);
    expect(await h.redis.exists(kept)).toBe(0);
    expect(await Promise.all([kept, orphan, young].map((k) => h.redis.zscore(h.keys.pushBlobs, k)))).toEqual([
      null,
      null,
      expect.any(String),
    ]);
  });

  it('rows of a push far in the past land in DEFAULT and move into their partition when maintenance creates it', async () => {
    const old = new Date(Date.now() - 3 * 86_400_000);
    const item = pushItem(fixture, randomUUID(), old);
    const partition = `collector_metrics_p${old.toISOString().slice(0, 10).replaceAll('-', '')}`;
    await h.pool.query(`DROP TABLE IF EXISTS ${partition}`);
    await h.waitForJob(await h.enqueue([item]), 'completed');
    const where = async () =>
      (
        await h.pool.query('SELECT DISTINCT tableoid::regclass::text AS t FROM collector_metrics WHERE push_id = $1', [
          item.push_id,
        ])
      ).rows.map((r) => r.t);
    expect(await where()).toEqual(['collector_metrics_default']);
    const result = (await h.writer.maintenance.runNow('partitions')) as { created: string[]; movedFromDefault: number };
    expect(result.created).toContain(partition);
    expect(result.movedFromDefault).toBe(parsedFixture.metrics.length);
    expect(await where()).toEqual([partition]);
  });

  it('flushes heartbeats on its timer (edge hash + dirty set → collectors.last_heartbeat)', async () => {
    const collectorId = await insertCollector(h.pool);
    const seen = new Date().toISOString();
    await h.redis
      .multi()
      .hset(h.keys.heartbeat(collectorId), { last_seen: seen, status: 'active' })
      .sadd(h.keys.heartbeatDirty, collectorId)
      .exec();
    await waitUntil(
      'heartbeat flushed',
      async () => {
        const { rows } = await h.pool.query('SELECT last_heartbeat FROM collectors WHERE id = $1', [collectorId]);
        return rows[0].last_heartbeat?.toISOString() === seen;
      },
      5000,
    );
    expect(await h.redis.sismember(h.keys.heartbeatDirty, collectorId)).toBe(0);
  });

  it('publishes status changes on the status channel after commit', async () => {
    const collectorId = await insertCollector(h.pool);
    const sub = h.redis.duplicate();
    const messages: any[] = [];
    // What PostgreSQL shows the moment the first message arrives: published after COMMIT, so the
    // change is already visible to any other connection.
    let seenInDb: Promise<unknown> | undefined;
    await sub.subscribe(h.keys.statusChannel);
    sub.on('message', (_c, raw) => {
      const m = JSON.parse(raw);
      messages.push(m);
      if (m.collector_id === collectorId)
        seenInDb ??= h.pool
          .query('SELECT status, metrics_collected FROM collectors WHERE id = $1', [collectorId])
          .then((r) => r.rows[0]);
    });
    try {
      await h.waitForJob(await h.enqueue([pushItem(fixture, collectorId)]), 'completed');
      await waitUntil('status message', async () => messages.some((m) => m.collector_id === collectorId));
      expect(await seenInDb).toEqual({ status: 'active', metrics_collected: String(parsedFixture.metrics.length) });
      const m = messages.find((x) => x.collector_id === collectorId);
      expect(m).toMatchObject({
        collector_id: collectorId,
        status: 'active',
        metrics_collected: parsedFixture.metrics.length,
        last_heartbeat: null,
      });
      expect(typeof m.last_metric_at).toBe('string');

      // Counter-only changes (status stays active) are held and sent at most once a second per
      // collector, the newest winning: three more pushes in separate batches → one message.
      await new Promise((r) => setTimeout(r, 1100)); // what earlier tests left held has gone out
      const sentAt = Date.now();
      for (let i = 0; i < 3; i++) await h.waitForJob(await h.enqueue([pushItem(fixture, collectorId)]), 'completed');
      const total = 4 * parsedFixture.metrics.length;
      await waitUntil('counter message', async () =>
        messages.some((x) => x.collector_id === collectorId && x.metrics_collected === total),
      );
      const mine = messages.filter((x) => x.collector_id === collectorId);
      expect(mine.map((x) => x.metrics_collected)).toEqual([parsedFixture.metrics.length, total]);
      expect(Date.now() - sentAt).toBeGreaterThanOrEqual(900);
    } finally {
      await sub.quit();
    }
  });
});

/** Enqueues `n` jobs of one push each (one new collector) and waits until all are completed. */
/**
 * Enqueues `n` one-push jobs while the queue is paused, then lets the writer take them: they are all
 * waiting at once, so how many share a batch depends on what the writer holds, not on how fast this
 * process could add them (300 adds beside other load took longer than the batch window: 3 batches).
 */
async function storeOnePushJobs(h: WriterHarness, n: number): Promise<void> {
  const collectorId = await insertCollector(h.pool);
  await h.queue.pause();
  let ids: string[];
  try {
    ids = await Promise.all(Array.from({ length: n }, () => h.enqueue([pushItem(fixture, collectorId)])));
  } finally {
    await h.queue.resume();
  }
  await Promise.all(ids.map((id) => h.waitForJob(id, 'completed', 30_000)));
}

async function metricValue(h: WriterHarness, name: string): Promise<number> {
  const text = await (await fetch(`${h.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : 0;
}
