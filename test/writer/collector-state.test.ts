import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '@pga/logger';
import { createStatusPublisher, CURRENT_STATUSES, type StatusRow } from '../../services/writer/src/status-publisher';
import { createTestDatabase, type TestDatabase } from '../helpers';
import {
  fixture,
  insertCollector,
  pushItem,
  startWriterHarness,
  waitUntil,
  writeHeartbeatReport,
  type WriterHarness,
} from './helpers';

describe('writer: collector state from heartbeats, sweeps and uptime', () => {
  let db: TestDatabase;
  let h: WriterHarness;
  const messages: any[] = [];
  let sub: WriterHarness['redis'];

  beforeAll(async () => {
    db = await createTestDatabase();
    // Timers effectively off: these tests call the flusher and the sweep directly, deterministically
    // (the timer path is covered in store.test.ts).
    h = await startWriterHarness(db.url, { WRITER_HEARTBEAT_FLUSH_MS: '60000', WRITER_SWEEP_INTERVAL_MS: '3600000' });
    sub = h.redis.duplicate();
    await sub.subscribe(h.keys.statusChannel);
    sub.on('message', (_c, m) => messages.push(JSON.parse(m)));
  });
  afterAll(async () => {
    await sub?.quit();
    await h?.close();
    await db?.drop();
  });

  const collector = async (id: string) => (await h.pool.query('SELECT * FROM collectors WHERE id = $1', [id])).rows[0];
  const heartbeat = async (id: string, fields: Record<string, string>) => {
    await h.redis.multi().hset(h.keys.heartbeat(id), fields).sadd(h.keys.heartbeatDirty, id).exec();
  };

  it('flushes edge heartbeats from Redis in one batch, keeps history, and publishes the change', async () => {
    const ids = await Promise.all([insertCollector(h.pool), insertCollector(h.pool), insertCollector(h.pool)]);
    const seen = new Date(Date.now() - 1000).toISOString();
    for (const id of ids) {
      await heartbeat(id, {
        last_seen: seen,
        status: 'active',
        metrics_count: '13',
        collection_time_ms: '120',
        version: '3.0.0',
      });
    }
    expect(await h.writer.heartbeats.flushHeartbeats()).toBe(3);
    expect(await h.redis.scard(h.keys.heartbeatDirty)).toBe(0);
    for (const id of ids) {
      const c = await collector(id);
      expect(c.last_heartbeat.toISOString()).toBe(seen);
      // pending until the first push (admin issue): a heartbeat alone does not activate.
      expect(c).toMatchObject({
        status: 'pending',
        agent_version: '3.0.0',
        avg_collection_time_ms: 120,
        max_collection_time_ms: 120,
        last_collection_count: 13,
      });
    }
    const history = await h.pool.query('SELECT count(*)::int AS n FROM collector_heartbeats WHERE collector_id = ANY($1)', [ids]);
    expect(history.rows[0].n).toBe(3);
    await waitUntil('status messages', async () =>
      ids.every((id) => messages.some((m) => m.collector_id === id && m.last_heartbeat === seen)),
    );
  });

  it('an error heartbeat sets status error with the message; a later good one restores active', async () => {
    const id = await insertCollector(h.pool);
    await h.waitForJob(await h.enqueue([pushItem(fixture, id)]), 'completed');
    expect((await collector(id)).status).toBe('active');
    await heartbeat(id, {
      last_seen: new Date().toISOString(),
      status: 'error',
      last_error: 'pg_stat_statements missing',
      collection_time_ms: '400',
    });
    await h.writer.heartbeats.flushHeartbeats();
    expect(await collector(id)).toMatchObject({
      status: 'error',
      last_error: 'pg_stat_statements missing',
      error_count: '1',
      max_collection_time_ms: 400,
    });
    await heartbeat(id, { last_seen: new Date().toISOString(), status: 'active', collection_time_ms: '100' });
    await h.writer.heartbeats.flushHeartbeats();
    const c = await collector(id);
    expect(c.status).toBe('active');
    expect(c.avg_collection_time_ms).toBe(Math.round(400 * 0.8 + 100 * 0.2));
    expect(messages.filter((m) => m.collector_id === id).map((m) => m.status)).toEqual(
      expect.arrayContaining(['active', 'error']),
    );
  });

  it('applies a heartbeat once: its hash flushed again (re-marked dirty, a committed claim recovered) changes nothing', async () => {
    const id = await insertCollector(h.pool);
    const ago = (ms: number) => new Date(Date.now() - ms).toISOString();
    await heartbeat(id, { last_seen: ago(3000), status: 'active', collection_time_ms: '100' });
    await h.writer.heartbeats.flushHeartbeats();
    await heartbeat(id, {
      last_seen: ago(2000),
      status: 'error',
      last_error: 'pg_stat_statements missing',
      collection_time_ms: '400',
    });
    expect(await h.writer.heartbeats.flushHeartbeats()).toBe(1);
    const avg = Math.round(100 * 0.8 + 400 * 0.2);
    const applied = { status: 'error', error_count: '1', avg_collection_time_ms: avg, max_collection_time_ms: 400 };
    expect(await collector(id)).toMatchObject(applied);

    // Another heartbeat arrived between a flush's claim and its read: the id is dirty again, but the
    // hash it points at has been applied already.
    await h.redis.sadd(h.keys.heartbeatDirty, id);
    expect(await h.writer.heartbeats.flushHeartbeats()).toBe(1);
    expect(await collector(id)).toMatchObject(applied);

    // A writer committed the flush, then died before removing its claim: the claim is recovered and
    // the hash flushed again. Meanwhile the collector went silent and the sweep made it inactive: the
    // old heartbeat must not bring it back either.
    await h.pool.query(`UPDATE collectors SET status = 'inactive' WHERE id = $1`, [id]);
    await h.redis.zadd(`${h.keys.heartbeatDirty}:inflight`, Date.now() - 60_000, id);
    expect(await h.writer.heartbeats.recoverStale()).toBe(1);
    await h.writer.heartbeats.flushHeartbeats();
    expect(await collector(id)).toMatchObject({ ...applied, status: 'inactive' });

    // A new heartbeat is applied, once.
    await heartbeat(id, { last_seen: ago(1000), status: 'error', last_error: 'still missing', collection_time_ms: '400' });
    await h.writer.heartbeats.flushHeartbeats();
    await h.redis.sadd(h.keys.heartbeatDirty, id);
    await h.writer.heartbeats.flushHeartbeats();
    expect(await collector(id)).toMatchObject({
      status: 'error',
      last_error: 'still missing',
      error_count: '2',
      avg_collection_time_ms: Math.round(avg * 0.8 + 400 * 0.2),
    });
  });

  it('a heartbeat hash holding U+0000 (an older edge) does not stop the flush for the other collectors', async () => {
    const poisoned = await insertCollector(h.pool);
    const fine = await insertCollector(h.pool);
    const seen = new Date().toISOString();
    await heartbeat(poisoned, { last_seen: seen, status: 'error', last_error: 'disk\u0000full', version: '3.0\u0000' });
    await heartbeat(fine, { last_seen: seen, status: 'active' });
    expect(await h.writer.heartbeats.flushHeartbeats()).toBe(2);
    expect(await collector(poisoned)).toMatchObject({ status: 'error', last_error: 'diskfull', agent_version: '3.0' });
    expect((await collector(fine)).last_heartbeat).not.toBeNull();
  });

  it('sweeps collectors silent for more than 2 × interval to inactive and publishes it; a push brings them back', async () => {
    const silent = await insertCollector(h.pool, { interval: 60, status: 'active' });
    const fresh = await insertCollector(h.pool, { interval: 60, status: 'active' });
    await h.pool.query(
      `UPDATE collectors SET last_heartbeat = now() - interval '121 seconds', registered_at = now() - interval '1 hour' WHERE id = $1`,
      [silent],
    );
    await h.pool.query(
      `UPDATE collectors SET last_heartbeat = now() - interval '100 seconds', registered_at = now() - interval '1 hour' WHERE id = $1`,
      [fresh],
    );
    const result = (await h.writer.maintenance.runNow('sweep')) as { inactive: number };
    expect(result.inactive).toBe(1);
    expect((await collector(silent)).status).toBe('inactive');
    expect((await collector(fresh)).status).toBe('active');
    await waitUntil('inactive published', async () => messages.some((m) => m.collector_id === silent && m.status === 'inactive'));
    await h.waitForJob(await h.enqueue([pushItem(fixture, silent)]), 'completed');
    expect((await collector(silent)).status).toBe('active');
  });

  it('a push stamped in the future (an edge whose clock runs ahead) sets last_metric_at no later than now', async () => {
    const id = await insertCollector(h.pool, { interval: 60, status: 'active' });
    const inAMonth = new Date(Date.now() + 30 * 86_400_000);
    await h.waitForJob(await h.enqueue([pushItem(fixture, id, inAMonth)]), 'completed');
    const c = await collector(id);
    expect(c.last_metric_at.getTime()).toBeLessThanOrEqual(Date.now());
    expect(c.last_metric_at.getTime()).toBeGreaterThan(Date.now() - 60_000);
    // So the sweep can still find it silent once 2 × interval has passed.
    await h.pool.query(
      `UPDATE collectors SET last_metric_at = last_metric_at - interval '121 seconds', registered_at = now() - interval '1 hour' WHERE id = $1`,
      [id],
    );
    await h.writer.maintenance.runNow('sweep');
    expect((await collector(id)).status).toBe('inactive');
  });

  it('the sweep applies heartbeats waiting in Redis before judging silence: no false inactive (a writer restarting after downtime)', async () => {
    // Active, and silent in PostgreSQL for 60 s (6 × its interval): the writer was down. The edge
    // took a heartbeat meanwhile, which no flush applied yet (the first flush is a second after the
    // start; the overdue sweep runs at once).
    const id = await insertCollector(h.pool, { interval: 10, status: 'active', registeredAt: new Date(Date.now() - 3_600_000) });
    await h.pool.query(
      `UPDATE collectors SET last_metric_at = now() - interval '60 seconds', last_heartbeat = now() - interval '60 seconds' WHERE id = $1`,
      [id],
    );
    const seen = new Date().toISOString();
    await heartbeat(id, { last_seen: seen, status: 'active' });
    const from = messages.length;
    await h.writer.maintenance.runNow('sweep');
    const c = await collector(id);
    expect(c.status).toBe('active');
    expect(c.last_heartbeat.toISOString()).toBe(seen);
    await new Promise((r) => setTimeout(r, 200));
    expect(messages.slice(from).filter((m) => m.collector_id === id && m.status === 'inactive')).toEqual([]);
  });

  it('computes uptime_percentage over the rolling window from heartbeat and push history', async () => {
    // One clock reading: each heartbeat's minute is taken from it, not from a now() per INSERT, so a
    // minute boundary passing between two INSERTs cannot give two of them the same minute.
    const now = Date.now();
    const registered = new Date(now - 9.5 * 60_000); // 10 one-minute slots so far
    const id = await insertCollector(h.pool, { interval: 60, registeredAt: registered });
    const minute = (agoMin: number) => new Date(Math.floor((now - agoMin * 60_000) / 60_000) * 60_000);
    // Heartbeats in 4 distinct minutes and a push in a 5th: 5 of 10 slots.
    for (const agoMin of [1, 2, 3, 4]) {
      await h.pool.query(`INSERT INTO collector_heartbeats VALUES ($1, $2, 'active')`, [id, minute(agoMin)]);
    }
    await h.waitForJob(await h.enqueue([pushItem(fixture, id, new Date(now - 6 * 60_000))]), 'completed');
    await h.writer.maintenance.runNow('sweep');
    expect(Number((await collector(id)).uptime_percentage)).toBe(50);
    // Folded, the push's minute is read from collector_push_minutes (one row per minute, not per type).
    await h.writer.maintenance.runNow('rollup');
    await h.pool.query('UPDATE collectors SET uptime_percentage = 0 WHERE id = $1', [id]);
    await h.writer.maintenance.runNow('sweep');
    expect(Number((await collector(id)).uptime_percentage)).toBe(50);
    const minutes = await h.pool.query('SELECT count(*)::int AS n FROM collector_push_minutes WHERE collector_id = $1', [id]);
    expect(minutes.rows[0].n).toBe(1);
  });

  it('keeps in the history every minute a heartbeat came, not only the latest heartbeat: a writer down for minutes does not cut uptime', async () => {
    const registered = new Date(Date.now() - 9.5 * 60_000); // 10 one-minute slots so far
    const id = await insertCollector(h.pool, { interval: 60, registeredAt: registered });
    // One clock reading: crossing a minute boundary mid-test does not shift the expected minutes.
    const now = Date.now();
    const minute = (agoMin: number) => Math.floor((now - agoMin * 60_000) / 60_000) * 60_000;
    // What the edge wrote while no writer flushed: the hash holds the latest heartbeat only, the
    // minutes ZSET each minute with a heartbeat (one of them reporting an error), scored by minute.
    await h.redis.zadd(
      h.keys.heartbeatMinutes(id),
      minute(5),
      `${minute(5)}:active`,
      minute(3),
      `${minute(3)}:active`,
      minute(3),
      `${minute(3)}:error`,
      minute(1),
      `${minute(1)}:active`,
    );
    await heartbeat(id, { last_seen: new Date(now).toISOString(), status: 'active' });
    await h.redis.zadd(h.keys.heartbeatMinutes(id), minute(0), `${minute(0)}:active`);
    expect(await h.writer.heartbeats.flushHeartbeats()).toBe(1);
    const { rows } = await h.pool.query(
      'SELECT extract(epoch FROM minute)::bigint * 1000 AS t, status FROM collector_heartbeats WHERE collector_id = $1 ORDER BY minute',
      [id],
    );
    expect(rows.map((r) => [Number(r.t), r.status])).toEqual([
      [minute(5), 'active'],
      [minute(3), 'error'],
      [minute(1), 'active'],
      [minute(0), 'active'],
    ]);
    // Flushed minutes leave Redis; flushing again adds nothing.
    expect(await h.redis.exists(h.keys.heartbeatMinutes(id))).toBe(0);
    await h.writer.maintenance.runNow('sweep');
    expect(Number((await collector(id)).uptime_percentage)).toBe(40);
  });

  it('records command deliveries in PostgreSQL (admin collector_commands.delivered_at) and clears them from Redis', async () => {
    const id = await insertCollector(h.pool);
    const { rows } = await h.pool.query(
      `INSERT INTO collector_commands (collector_id, action) VALUES ($1, 'restart') RETURNING id`,
      [id],
    );
    const cmd = rows[0].id as string;
    const at = new Date(Date.now() - 5000).toISOString();
    const unknown = randomUUID();
    await h.redis.hset(h.keys.deliveredCommands, cmd, at, unknown, at);
    expect(await h.writer.heartbeats.flushDeliveries()).toBe(2);
    const c = await h.pool.query('SELECT delivered_at FROM collector_commands WHERE id = $1', [cmd]);
    expect(c.rows[0].delivered_at.toISOString()).toBe(at);
    const d = await h.pool.query('SELECT command_id FROM collector_command_deliveries ORDER BY 1');
    expect(d.rows.map((r) => r.command_id)).toEqual([cmd, unknown].sort());
    expect(await h.redis.hlen(h.keys.deliveredCommands)).toBe(0);
  });

  it('returns heartbeats claimed by a writer that died before COMMIT to the dirty set', async () => {
    const id = await insertCollector(h.pool);
    const seen = new Date().toISOString();
    await heartbeat(id, { last_seen: seen, status: 'active' });
    // What a writer killed mid-flush leaves behind: the id claimed (in flight) 60 s ago, never committed.
    await h.redis
      .multi()
      .srem(h.keys.heartbeatDirty, id)
      .zadd(`${h.keys.heartbeatDirty}:inflight`, Date.now() - 60_000, id)
      .exec();
    expect(await h.writer.heartbeats.flushHeartbeats()).toBe(0);
    expect(await h.writer.heartbeats.recoverStale()).toBe(1);
    expect(await h.writer.heartbeats.flushHeartbeats()).toBe(1);
    expect((await collector(id)).last_heartbeat.toISOString()).toBe(seen);
    expect(await h.redis.zcard(`${h.keys.heartbeatDirty}:inflight`)).toBe(0);
  });

  it('puts heartbeats back into the dirty set when PostgreSQL rejects the flush', async () => {
    const id = await insertCollector(h.pool);
    await heartbeat(id, { last_seen: new Date().toISOString(), status: 'active' });
    // Make the flush statement fail: hold a lock it needs, then cancel it while it waits.
    const client = await h.pool.connect();
    try {
      await client.query('BEGIN');
      await client.query(`SET LOCAL lock_timeout = '10s'`);
      await client.query('LOCK TABLE collector_heartbeats IN ACCESS EXCLUSIVE MODE');
      const flush = h.writer.heartbeats.flushHeartbeats();
      // Its rejection can arrive before the cancel's own answer (below): handled from the start, so
      // it is not an unhandled rejection for that moment; `expect(flush).rejects` still checks it.
      flush.catch(() => undefined);
      // the writer's statement now waits on the lock; cancel it from here
      await waitUntil('flush waiting', async () => {
        const r = await h.pool.query(
          `SELECT pid FROM pg_stat_activity WHERE application_name = 'pga-writer' AND wait_event_type = 'Lock'`,
        );
        if (r.rows.length === 0) return false;
        await h.pool.query('SELECT pg_cancel_backend($1)', [r.rows[0].pid]);
        return true;
      });
      await expect(flush).rejects.toThrow();
      await client.query('ROLLBACK');
    } finally {
      client.release();
    }
    expect(await h.redis.sismember(h.keys.heartbeatDirty, id)).toBe(1);
    await h.writer.heartbeats.flushHeartbeats();
    expect((await collector(id)).last_heartbeat).not.toBeNull();
  });

  it('while heartbeat flushes keep failing, the sweep counts a dirty heartbeat as a sign of life only within 2 × interval', async () => {
    const opts = { interval: 60, status: 'active', registeredAt: new Date(Date.now() - 3_600_000) };
    const [silent, alive] = [await insertCollector(h.pool, opts), await insertCollector(h.pool, opts)];
    await h.pool.query(
      `UPDATE collectors SET last_heartbeat = now() - interval '10 minutes', last_metric_at = now() - interval '10 minutes' WHERE id = ANY($1)`,
      [[silent, alive]],
    );
    // Each has a heartbeat in Redis no flush gets into PostgreSQL: the silent one's from 5 minutes
    // ago (> 2 × 60 s), the other's from now.
    await heartbeat(silent, { last_seen: new Date(Date.now() - 300_000).toISOString(), status: 'active' });
    await heartbeat(alive, { last_seen: new Date().toISOString(), status: 'active' });
    await h.pool.query(`CREATE FUNCTION pga_test_refuse_heartbeat() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.collector_id IN ('${silent}', '${alive}') THEN RAISE EXCEPTION 'heartbeat refused (test)'; END IF; RETURN NEW; END $$`);
    await h.pool.query(`CREATE TRIGGER pga_test_refuse_heartbeat BEFORE INSERT ON collector_heartbeats
      FOR EACH ROW EXECUTE FUNCTION pga_test_refuse_heartbeat()`);
    try {
      await expect(h.writer.heartbeats.flushHeartbeats()).rejects.toThrow(/heartbeat refused/);
      await h.writer.maintenance.runNow('sweep');
      expect(await h.redis.smismember(h.keys.heartbeatDirty, silent, alive)).toEqual([1, 1]);
      expect((await collector(silent)).status).toBe('inactive');
      expect((await collector(alive)).status).toBe('active');
    } finally {
      await h.pool.query(
        'DROP TRIGGER pga_test_refuse_heartbeat ON collector_heartbeats; DROP FUNCTION pga_test_refuse_heartbeat()',
      );
    }
    // Flushed at last: the old heartbeat does not bring the silent one back; the fresh one is applied.
    await h.writer.heartbeats.flushHeartbeats();
    expect((await collector(silent)).status).toBe('inactive');
    expect((await collector(alive)).status).toBe('active');
    expect((await collector(alive)).last_heartbeat.getTime()).toBeGreaterThan(Date.now() - 60_000);
  });

  it('a pending collector that heartbeated and went silent becomes inactive (one never heard from stays pending); a heartbeat brings it back to pending', async () => {
    const silent = await insertCollector(h.pool, { interval: 60 });
    const unheard = await insertCollector(h.pool, { interval: 60 });
    await h.pool.query(
      `UPDATE collectors SET last_heartbeat = now() - interval '5 minutes', registered_at = now() - interval '1 hour' WHERE id = $1`,
      [silent],
    );
    await h.pool.query(`UPDATE collectors SET registered_at = now() - interval '1 hour' WHERE id = $1`, [unheard]);
    expect((await collector(silent)).status).toBe('pending');
    await h.writer.maintenance.runNow('sweep');
    expect((await collector(silent)).status).toBe('inactive');
    expect((await collector(unheard)).status).toBe('pending');
    await waitUntil('inactive published', async () => messages.some((m) => m.collector_id === silent && m.status === 'inactive'));
    await heartbeat(silent, { last_seen: new Date().toISOString(), status: 'active' });
    await h.writer.heartbeats.flushHeartbeats();
    expect(await collector(silent)).toMatchObject({ status: 'pending', last_metric_at: null });
  });

  it('a good heartbeat after an error brings a collector that never pushed back to pending, not active', async () => {
    const id = await insertCollector(h.pool);
    await heartbeat(id, { last_seen: new Date(Date.now() - 2000).toISOString(), status: 'error', last_error: 'no pg_stat' });
    await h.writer.heartbeats.flushHeartbeats();
    expect((await collector(id)).status).toBe('error');
    await heartbeat(id, { last_seen: new Date(Date.now() - 1000).toISOString(), status: 'active' });
    await h.writer.heartbeats.flushHeartbeats();
    // pending until the first push, whatever it reported in between.
    expect(await collector(id)).toMatchObject({ status: 'pending', last_metric_at: null, error_count: '1' });
  });

  it('a heartbeat does not change the status of a collector in the recycle bin (the sweep would never undo it)', async () => {
    const id = await insertCollector(h.pool, { status: 'inactive' });
    await h.pool.query(`UPDATE collectors SET deleted_at = now(), last_metric_at = now() - interval '1 hour' WHERE id = $1`, [
      id,
    ]);
    // Accepted in the edge's short deny window after the delete.
    const seen = new Date(Date.now() - 2000).toISOString();
    await heartbeat(id, { last_seen: seen, status: 'active' });
    await h.writer.heartbeats.flushHeartbeats();
    expect(await collector(id)).toMatchObject({ status: 'inactive' });
    expect((await collector(id)).last_heartbeat.toISOString()).toBe(seen);
    await heartbeat(id, { last_seen: new Date(Date.now() - 1000).toISOString(), status: 'error', last_error: 'gone' });
    await h.writer.heartbeats.flushHeartbeats();
    expect(await collector(id)).toMatchObject({ status: 'inactive', last_error: 'gone', error_count: '1' });
  });

  it('a push or heartbeat older than 2 × interval updates the times but does not revive an inactive collector', async () => {
    const id = await insertCollector(h.pool, {
      interval: 60,
      status: 'inactive',
      registeredAt: new Date(Date.now() - 7_200_000),
    });
    await h.pool.query(`UPDATE collectors SET last_metric_at = now() - interval '1 hour' WHERE id = $1`, [id]);
    const ago = (ms: number) => new Date(Date.now() - ms);
    // A backlog: heartbeats and a push (a dead letter retried) from minutes ago, past the sweep's 120 s.
    const seen = ago(300_000).toISOString();
    await heartbeat(id, { last_seen: seen, status: 'active' });
    await h.writer.heartbeats.flushHeartbeats();
    expect(await collector(id)).toMatchObject({ status: 'inactive' });
    expect((await collector(id)).last_heartbeat.toISOString()).toBe(seen);
    await heartbeat(id, { last_seen: ago(240_000).toISOString(), status: 'error', last_error: 'old' });
    await h.writer.heartbeats.flushHeartbeats();
    expect(await collector(id)).toMatchObject({ status: 'inactive', last_error: 'old', error_count: '1' });

    const receivedAt = ago(600_000);
    await h.waitForJob(await h.enqueue([pushItem(fixture, id, receivedAt)]), 'completed');
    const c = await collector(id);
    expect(c.status).toBe('inactive');
    expect(c.last_metric_at.toISOString()).toBe(receivedAt.toISOString());
    expect(Number(c.metrics_collected)).toBeGreaterThan(0);
    expect(c.success_count).toBe('1');

    // A fresh heartbeat (within 2 × interval) does bring it back, once.
    await heartbeat(id, { last_seen: ago(1000).toISOString(), status: 'active' });
    await h.writer.heartbeats.flushHeartbeats();
    expect((await collector(id)).status).toBe('active');
    await waitUntil('active published', async () => messages.some((m) => m.collector_id === id && m.status === 'active'));
    expect(messages.filter((m) => m.collector_id === id && m.status === 'active')).toHaveLength(1);
  });

  it('the sweep skips a collector row another transaction holds (no wait, no deadlock) and sweeps the others', async () => {
    const opts = { interval: 60, status: 'active', registeredAt: new Date(Date.now() - 3_600_000) };
    const held = await insertCollector(h.pool, opts);
    const other = await insertCollector(h.pool, opts);
    // Silent for 10 minutes; an uptime the refresh would change (no activity at all: 0).
    await h.pool.query(
      `UPDATE collectors SET last_heartbeat = now() - interval '10 minutes', uptime_percentage = 42 WHERE id = ANY($1)`,
      [[held, other]],
    );
    const client = await h.pool.connect();
    let sweep: Promise<unknown> | undefined;
    try {
      // What a batch or heartbeat flush writing this collector right now holds.
      await client.query('BEGIN');
      await client.query('SELECT 1 FROM collectors WHERE id = $1 FOR UPDATE', [held]);
      sweep = h.writer.maintenance.runNow('sweep');
      const outcome = await Promise.race([
        sweep.then(() => 'done'),
        new Promise((r) => setTimeout(() => r('blocked'), 5000).unref()),
      ]);
      expect(outcome).toBe('done');
      expect(await collector(held)).toMatchObject({ status: 'active', uptime_percentage: '42.00' });
      expect(await collector(other)).toMatchObject({ status: 'inactive', uptime_percentage: '0.00' });
    } finally {
      await client.query('ROLLBACK');
      client.release();
      await sweep?.catch(() => undefined);
    }
    // The next sweep takes it.
    await h.writer.maintenance.runNow('sweep');
    expect(await collector(held)).toMatchObject({ status: 'inactive', uptime_percentage: '0.00' });
  });

  it('counts in writer_heartbeats_flushed_total only the heartbeats applied, not a hash flushed again', async () => {
    const flushed = async () => (await h.writer.metrics.heartbeatsFlushed.get()).values[0]?.value ?? 0;
    const id = await insertCollector(h.pool);
    await heartbeat(id, { last_seen: new Date().toISOString(), status: 'active' });
    const before = await flushed();
    expect(await h.writer.heartbeats.flushHeartbeats()).toBe(1);
    expect(await flushed()).toBe(before + 1);
    // Re-marked dirty, same hash: read and skipped as already applied.
    await h.redis.sadd(h.keys.heartbeatDirty, id);
    expect(await h.writer.heartbeats.flushHeartbeats()).toBe(1);
    expect(await flushed()).toBe(before + 1);
  });
  it('applies the collection times an edge added to Redis (all since the last flush) once, and those of an older edge’s hash', async () => {
    const id = await insertCollector(h.pool);
    const times = h.keys.heartbeatCollectionTimes(id);
    const ago = (ms: number) => new Date(Date.now() - ms);
    // What the edge writes for heartbeats reporting 100, 500 and 300 ms, the last one's hash kept.
    const report = (seen: Date, ms: number) => writeHeartbeatReport(h, id, seen, ms);
    await report(ago(3000), 100);
    await report(ago(2500), 500);
    await report(ago(2000), 300);
    const left = await h.redis.zrange(times, 0, -1, 'WITHSCORES');
    expect(await h.writer.heartbeats.flushHeartbeats()).toBe(1);
    expect(await collector(id)).toMatchObject({ avg_collection_time_ms: 300, max_collection_time_ms: 500 });
    expect(await h.redis.exists(times)).toBe(0);

    // A writer died after COMMIT, before removing them: the same reports and hash come back, and are
    // not applied again (not newer than last_heartbeat); then they are gone.
    await h.redis.zadd(times, ...left.toReversed());
    await h.redis.sadd(h.keys.heartbeatDirty, id);
    await h.writer.heartbeats.flushHeartbeats();
    expect(await collector(id)).toMatchObject({ avg_collection_time_ms: 300, max_collection_time_ms: 500 });
    expect(await h.redis.exists(times)).toBe(0);

    // A hash from an older edge (no collection_times mark) still counts its collection_time_ms.
    await h.redis.del(h.keys.heartbeat(id));
    await heartbeat(id, { last_seen: ago(1000).toISOString(), status: 'active', collection_time_ms: '800' });
    await h.writer.heartbeats.flushHeartbeats();
    expect(await collector(id)).toMatchObject({
      avg_collection_time_ms: Math.round(300 * 0.8 + 800 * 0.2),
      max_collection_time_ms: 800,
    });
  });

  it("with two writers, one's held counter update does not undo a status the other published since: it goes out with the committed status", async () => {
    const id = await insertCollector(h.pool, { status: 'active' });
    const logger = createLogger({ name: 'publisher-test', level: 'silent', pretty: false });
    const current = async (ids: string[]) => (await h.pool.query<StatusRow>(CURRENT_STATUSES, [ids])).rows;
    const x = createStatusPublisher(h.redis, h.keys.statusChannel, logger, { counterIntervalMs: 300, current });
    const y = createStatusPublisher(h.redis, h.keys.statusChannel, logger, { current });
    const row = (status: string, oldStatus: string): StatusRow => ({
      id,
      status,
      old_status: oldStatus,
      last_heartbeat: new Date(),
      last_metric_at: new Date(),
      metrics_collected: '5',
    });
    // Writer X commits a batch of the collector's: counters only (status unchanged), held.
    expect(await x.publish([row('active', 'active')])).toBe(0);
    // Writer Y then commits an error heartbeat and publishes the change at once.
    await h.pool.query("UPDATE collectors SET status = 'error' WHERE id = $1", [id]);
    expect(await y.publish([row('error', 'active')])).toBe(1);
    // X's held update goes out after: with the status committed now, not the one its batch saw.
    await waitUntil('the held update published', async () => messages.filter((m) => m.collector_id === id).length === 2);
    expect(messages.filter((m) => m.collector_id === id).map((m) => m.status)).toEqual(['error', 'error']);
  });
});
