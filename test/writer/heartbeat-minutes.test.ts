import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Pool } from '@pga/db';
import { createLogger, createOutageLog } from '@pga/logger';
import { createHeartbeatFlusher, HEARTBEAT_MINUTES_PER_FLUSH } from '../../services/writer/src/heartbeat-flush';
import { createWriterMetrics } from '../../services/writer/src/metrics';
import { createTestDatabase, type TestDatabase } from '../helpers';
import { insertCollector, startWriterHarness, waitUntil, type WriterHarness } from './helpers';

/** The writer's first scheduled sweep (at its start) has run: it flushes heartbeats, which would race the tests' flushes. */
async function firstSweepDone(h: WriterHarness) {
  await waitUntil('the first sweep', async () => {
    const runs = (await h.writer.metrics.maintenanceRuns.get()).values;
    return runs.some((v) => v.labels.task === 'sweep' && v.value > 0);
  });
}

/** The edge's heartbeat-minutes buffer (a ZSET scored by minute) read by the writer in bounded slices. */
describe('writer: heartbeat minutes flushed in bounded slices; the sweep and flushes in flight', () => {
  let db: TestDatabase;
  let h: WriterHarness;
  beforeAll(async () => {
    db = await createTestDatabase();
    // Timers effectively off: the tests call the flusher and the sweep directly.
    h = await startWriterHarness(db.url, { WRITER_HEARTBEAT_FLUSH_MS: '60000', WRITER_SWEEP_INTERVAL_MS: '3600000' });
    await firstSweepDone(h);
  });
  afterAll(async () => {
    await h?.close();
    await db?.drop();
  });

  const K = HEARTBEAT_MINUTES_PER_FLUSH;
  // One clock reading per test: a test that crosses a minute boundary still names the same minutes
  // when it writes the buffer, the heartbeat's last_seen, and its expectations.
  let now = Date.now();
  beforeEach(() => {
    now = Date.now();
  });
  const minute = (agoMin: number) => Math.floor((now - agoMin * 60_000) / 60_000) * 60_000;
  const collector = async (id: string) => (await h.pool.query('SELECT * FROM collectors WHERE id = $1', [id])).rows[0];
  const history = async (id: string) =>
    (
      await h.pool.query<{ t: string; status: string }>(
        'SELECT extract(epoch FROM minute)::bigint * 1000 AS t, status FROM collector_heartbeats WHERE collector_id = $1 ORDER BY minute',
        [id],
      )
    ).rows.map((r) => [Number(r.t), r.status] as const);
  /** What the edge leaves for `agoMinutes` (newest last): ZADD <minute> <minute>:<status>, and the latest heartbeat's hash. */
  const buffer = async (id: string, entries: [number, 'active' | 'error'][], hash: Record<string, string>) => {
    const args = entries.flatMap(([t, status]) => [t, `${t}:${status}`]);
    await h.redis
      .multi()
      .zadd(h.keys.heartbeatMinutes(id), ...args)
      .hset(h.keys.heartbeat(id), hash)
      .sadd(h.keys.heartbeatDirty, id)
      .exec();
  };

  it('a collector with 200 buffered minutes is flushed over several flushes, the oldest K each, every minute ending in the history, its hash applied once', async () => {
    expect(K).toBe(60);
    const id = await insertCollector(h.pool, { interval: 60, registeredAt: new Date(Date.now() - 4 * 3600_000) });
    // 200 minutes (199 … 0 minutes ago), and minute 140 also with an error: its two entries fall on
    // both sides of the first slice (ranks 59 and 60).
    const entries: [number, 'active' | 'error'][] = [];
    for (let m = 199; m >= 0; m--) entries.push([minute(m), 'active']);
    entries.push([minute(140), 'error']);
    const seen = new Date(now).toISOString();
    await buffer(id, entries, { last_seen: seen, status: 'error', last_error: 'boom' });

    const rows = async () => (await history(id)).length;
    const dirty = async () => (await h.redis.sismember(h.keys.heartbeatDirty, id)) === 1;
    // 1st flush: the oldest 60 entries (minutes 199…141, 140 active) and the hash's minute (0).
    expect(await h.writer.heartbeats.flushHeartbeats()).toBe(1);
    expect(await rows()).toBe(61);
    expect(await h.redis.zcard(h.keys.heartbeatMinutes(id))).toBe(141);
    expect(await dirty()).toBe(true);
    expect(await h.redis.zcard(`${h.keys.heartbeatDirty}:inflight`)).toBe(0);
    const after1 = await collector(id);
    expect(after1).toMatchObject({ status: 'error', last_error: 'boom' });
    expect(Number(after1.error_count)).toBe(1);
    expect(after1.last_heartbeat.toISOString()).toBe(seen);
    // 2nd: 140 error (upsert), 139…81; 3rd: 80…21; 4th: 20…0 (0 already there).
    expect(await h.writer.heartbeats.flushHeartbeats()).toBe(1);
    expect(await rows()).toBe(120);
    expect(await h.redis.zcard(h.keys.heartbeatMinutes(id))).toBe(81);
    expect(await h.writer.heartbeats.flushHeartbeats()).toBe(1);
    expect(await rows()).toBe(180);
    expect(await h.redis.zcard(h.keys.heartbeatMinutes(id))).toBe(21);
    expect(await dirty()).toBe(true);
    expect(await h.writer.heartbeats.flushHeartbeats()).toBe(1);
    expect(await rows()).toBe(200);
    expect(await h.redis.exists(h.keys.heartbeatMinutes(id))).toBe(0);
    expect(await dirty()).toBe(false);
    expect(await h.writer.heartbeats.flushHeartbeats()).toBe(0);

    const all = await history(id);
    expect(all.map(([t]) => t)).toEqual(Array.from({ length: 200 }, (_, i) => minute(199 - i)));
    expect(all.filter(([, s]) => s === 'error').map(([t]) => t)).toEqual([minute(140), minute(0)]);
    // The hash re-read by each flush was applied once: not counted again, not an error again.
    const last = await collector(id);
    expect(last.status).toBe('error');
    expect(Number(last.error_count)).toBe(1);
  });

  it('each statement takes at most K minutes per collector; a full batch takes its collectors again in the same flush until drained', async () => {
    const ids = await Promise.all([0, 1, 2].map(() => insertCollector(h.pool, { interval: 60 })));
    for (const id of ids)
      await buffer(
        id,
        Array.from({ length: 12 }, (_, i) => [minute(11 - i), 'active'] as [number, 'active']),
        { last_seen: new Date(now).toISOString(), status: 'active' },
      );
    // A flusher of 3 collectors and 5 minutes per statement, its statements recorded.
    const perStatement: Map<string, number>[] = [];
    const pool = {
      query: (text: string, params: unknown[]) => {
        const count = new Map<string, number>();
        // $7: the minutes' collector ids.
        for (const id of (params[6] as string[] | undefined) ?? []) count.set(id, (count.get(id) ?? 0) + 1);
        perStatement.push(count);
        return h.pool.query(text, params);
      },
    } as unknown as Pool;
    const logger = createLogger({ name: 'minutes-test', level: 'warn', pretty: false });
    const flusher = createHeartbeatFlusher({
      pool,
      redis: h.redis,
      keys: h.keys,
      logger,
      metrics: createWriterMetrics(),
      publish: async () => 0,
      pgOutage: createOutageLog(logger, 'PostgreSQL'),
      redisOutage: createOutageLog(logger, 'Redis'),
      batchSize: 3,
      minutesPerFlush: 5,
    });
    expect(await flusher.flushHeartbeats()).toBe(3);
    expect(perStatement.length).toBe(3); // 5 + 5 + 2 minutes each
    for (const count of perStatement) {
      expect([...count.keys()].sort()).toEqual([...ids].sort());
      for (const n of count.values()) expect(n).toBeLessThanOrEqual(5);
    }
    for (const id of ids) {
      expect((await history(id)).map(([t]) => t)).toEqual(Array.from({ length: 12 }, (_, i) => minute(11 - i)));
      expect(await h.redis.exists(h.keys.heartbeatMinutes(id))).toBe(0);
    }
    expect(await h.redis.scard(h.keys.heartbeatDirty)).toBe(0);
  });

  it('a heartbeat claimed by a flush in progress (another writer) when the sweep runs: not swept inactive', async () => {
    const id = await insertCollector(h.pool, { interval: 10, status: 'active', registeredAt: new Date(Date.now() - 3_600_000) });
    await h.pool.query(
      `UPDATE collectors SET last_metric_at = now() - interval '60 seconds', last_heartbeat = now() - interval '60 seconds' WHERE id = $1`,
      [id],
    );
    await h.redis
      .multi()
      .hset(h.keys.heartbeat(id), { last_seen: new Date().toISOString(), status: 'active' })
      .sadd(h.keys.heartbeatDirty, id)
      .exec();
    // The CLAIM of heartbeat-flush.ts (SPOP into the in-flight ZSET) by a flush now reading the hashes.
    await h.redis.eval(
      `local ids = redis.call('SPOP', KEYS[1], 1000) for _, i in ipairs(ids) do redis.call('ZADD', KEYS[2], ARGV[1], i) end return ids`,
      2,
      h.keys.heartbeatDirty,
      `${h.keys.heartbeatDirty}:inflight`,
      Date.now(),
    );
    await h.writer.maintenance.runNow('sweep');
    expect((await collector(id)).status).toBe('active');
    // Its flush done, a later sweep judges it on what PostgreSQL has.
    await h.redis.zrem(`${h.keys.heartbeatDirty}:inflight`, id);
    await h.writer.maintenance.runNow('sweep');
    expect((await collector(id)).status).toBe('inactive');
  });
});

describe('writer: the sweep waits for its own writer’s flush in progress', () => {
  let db: TestDatabase;
  let h: WriterHarness;
  beforeAll(async () => {
    db = await createTestDatabase();
    h = await startWriterHarness(db.url, { WRITER_HEARTBEAT_FLUSH_MS: '100', WRITER_SWEEP_INTERVAL_MS: '3600000' });
    await firstSweepDone(h);
  });
  afterAll(async () => {
    await h?.close();
    await db?.drop();
  });

  it('the sweep runs after the timer flush holding the claim has committed', async () => {
    const id = await insertCollector(h.pool, { interval: 60, status: 'active', registeredAt: new Date(Date.now() - 600_000) });
    const client = await h.pool.connect();
    let sweep: Promise<unknown> | undefined;
    try {
      // The timer's flush claims the heartbeat, then waits for the collector's row lock held here.
      await client.query('BEGIN');
      await client.query('SELECT 1 FROM collectors WHERE id = $1 FOR UPDATE', [id]);
      await h.redis
        .multi()
        .hset(h.keys.heartbeat(id), { last_seen: new Date().toISOString(), status: 'active' })
        .sadd(h.keys.heartbeatDirty, id)
        .exec();
      await waitUntil('the timer flush waiting on the row lock', async () => {
        const r = await h.pool.query(
          `SELECT 1 FROM pg_stat_activity WHERE application_name = 'pga-writer' AND wait_event_type = 'Lock'`,
        );
        return r.rows.length > 0;
      });
      sweep = h.writer.maintenance.runNow('sweep');
      sweep.catch(() => undefined);
      // A sweep not waiting would be done by now: its statements skip the locked row.
      await new Promise((r) => setTimeout(r, 500));
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    await sweep;
    // The sweep's uptime saw the flushed heartbeat's minute (one of the 10 slots since registration).
    const c = (await h.pool.query('SELECT status, uptime_percentage, last_heartbeat FROM collectors WHERE id = $1', [id]))
      .rows[0];
    expect(c.last_heartbeat).not.toBeNull();
    expect(c.status).toBe('active');
    expect(Number(c.uptime_percentage)).toBeGreaterThan(0);
  });
});
