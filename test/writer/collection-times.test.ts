import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../helpers';
import { insertCollector, startWriterHarness, writeHeartbeatReport, type WriterHarness } from './helpers';

/**
 * The collection-time reports (keys.heartbeatCollectionTimes) with two writers on one Redis prefix
 * and a writer dying after COMMIT: each report is applied once, none is lost (review26 ct-race).
 */
describe('writer: collection times applied once with two writers and after a crash', () => {
  let db: TestDatabase;
  let h: WriterHarness;
  let h2: WriterHarness;
  beforeAll(async () => {
    db = await createTestDatabase();
    const off = { WRITER_HEARTBEAT_FLUSH_MS: '60000', WRITER_SWEEP_INTERVAL_MS: '3600000' };
    h = await startWriterHarness(db.url, off);
    h2 = await startWriterHarness(db.url, { ...off, REDIS_KEY_PREFIX: h.prefix });
    // The tests flush themselves: no timer flush in between, however long they take.
    await Promise.all([h.writer.heartbeats.stop(), h2.writer.heartbeats.stop()]);
  });
  afterAll(async () => {
    await h2?.close();
    await h?.close();
    await db?.drop();
  });
  const collector = async (id: string) => (await h.pool.query('SELECT * FROM collectors WHERE id = $1', [id])).rows[0];
  const ago = (ms: number) => new Date(Date.now() - ms);
  const report = (id: string, seen: Date, ms: number) => writeHeartbeatReport(h, id, seen, ms);
  /** Holds the collector's row so a flush waits in its statement after it read Redis. */
  const holdRow = async (id: string) => {
    const lock = await h.pool.connect();
    await lock.query('BEGIN');
    await lock.query('SELECT 1 FROM collectors WHERE id = $1 FOR UPDATE', [id]);
    return async () => {
      await lock.query('COMMIT');
      lock.release();
    };
  };
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  it('two writers: a heartbeat during one writer’s flush is not applied again by the other with the reports before it', async () => {
    const id = await insertCollector(h.pool);
    await report(id, ago(5000), 100);
    await report(id, ago(4500), 500);
    await report(id, ago(4000), 300);
    const release = await holdRow(id);
    const w1 = h.writer.heartbeats.flushHeartbeats();
    await sleep(500);
    await report(id, ago(1000), 900); // during w1's flush: dirty again
    const w2 = h2.writer.heartbeats.flushHeartbeats();
    await sleep(500);
    await release();
    await Promise.all([w1, w2]);
    await h2.writer.heartbeats.flushHeartbeats(); // what was left dirty for after w1
    const c = await collector(id);
    // Once each: 300 (the mean of 100, 500, 300), then 900 at weight 0.2.
    expect(c).toMatchObject({ avg_collection_time_ms: Math.round(300 * 0.8 + 900 * 0.2), max_collection_time_ms: 900 });
    expect(await h.redis.exists(h.keys.heartbeatCollectionTimes(id))).toBe(0);
  });

  it('a writer that died after COMMIT, before removing the reports: a newer heartbeat does not apply them again', async () => {
    const id = await insertCollector(h.pool);
    const times = h.keys.heartbeatCollectionTimes(id);
    await report(id, ago(5000), 100);
    await report(id, ago(4500), 500);
    await report(id, ago(4000), 300);
    const left = await h.redis.zrange(times, 0, -1, 'WITHSCORES');
    await h.writer.heartbeats.flushHeartbeats();
    expect(await collector(id)).toMatchObject({ avg_collection_time_ms: 300, max_collection_time_ms: 500 });
    // What a writer dying between COMMIT and the removal leaves behind.
    await h.redis.zadd(times, left[1]!, left[0]!, left[3]!, left[2]!, left[5]!, left[4]!);
    await report(id, ago(1000), 900);
    await h.writer.heartbeats.flushHeartbeats();
    expect(await collector(id)).toMatchObject({
      avg_collection_time_ms: Math.round(300 * 0.8 + 900 * 0.2),
      max_collection_time_ms: 900,
    });
    expect(await h.redis.exists(times)).toBe(0);
  });

  it('two writers: a report arriving after both read is not lost', async () => {
    const id = await insertCollector(h.pool);
    await report(id, ago(5000), 100);
    const release = await holdRow(id);
    const w1 = h.writer.heartbeats.flushHeartbeats();
    await sleep(300);
    await report(id, ago(4000), 200);
    const w2 = h2.writer.heartbeats.flushHeartbeats();
    await sleep(300);
    await report(id, ago(3000), 5000); // after both read
    await release();
    await Promise.all([w1, w2]);
    await h.writer.heartbeats.flushHeartbeats();
    expect(await collector(id)).toMatchObject({ max_collection_time_ms: 5000 });
    expect(await h.redis.exists(h.keys.heartbeatCollectionTimes(id))).toBe(0);
  });

  it('a second writer does not claim a collector another flush has in flight: it stays dirty for after it', async () => {
    const id = await insertCollector(h.pool);
    await report(id, ago(3000), 100);
    const release = await holdRow(id);
    const w1 = h.writer.heartbeats.flushHeartbeats();
    await sleep(300);
    await report(id, ago(2000), 300);
    expect(await h2.writer.heartbeats.flushHeartbeats()).toBe(0);
    expect(await h.redis.sismember(h.keys.heartbeatDirty, id)).toBe(1);
    await release();
    expect(await w1).toBe(1);
    expect(await h2.writer.heartbeats.flushHeartbeats()).toBe(1);
    expect(await collector(id)).toMatchObject({
      avg_collection_time_ms: Math.round(100 * 0.8 + 300 * 0.2),
      max_collection_time_ms: 300,
    });
  });

  it('two writers with the same collector in flight (a slow flush’s claim recovered): each report once, a later one kept', async () => {
    const id = await insertCollector(h.pool);
    await report(id, ago(5000), 100);
    await report(id, ago(4500), 500);
    await report(id, ago(4000), 300);
    const release = await holdRow(id);
    const w1 = h.writer.heartbeats.flushHeartbeats();
    await sleep(300);
    await report(id, ago(2000), 900);
    // w1 counts as dead after 30 s: its claim goes back, and w2 takes the collector too.
    expect(await h2.writer.heartbeats.recoverStale(0)).toBe(1);
    const w2 = h2.writer.heartbeats.flushHeartbeats();
    await sleep(300);
    await report(id, ago(1000), 50); // after both read
    await release();
    await Promise.all([w1, w2]);
    expect(await collector(id)).toMatchObject({
      avg_collection_time_ms: Math.round(300 * 0.8 + 900 * 0.2),
      max_collection_time_ms: 900,
    });
    await h.writer.heartbeats.flushHeartbeats();
    expect(await collector(id)).toMatchObject({
      avg_collection_time_ms: Math.round((300 * 0.8 + 900 * 0.2) * 0.8 + 50 * 0.2),
      max_collection_time_ms: 900,
    });
    expect(await h.redis.exists(h.keys.heartbeatCollectionTimes(id))).toBe(0);
  });

  it('a hash from an older edge, or this round’s earlier format (`collection_times: zset`), counts its own time', async () => {
    const id = await insertCollector(h.pool);
    // The earlier format's running figures under the old key: not read (nothing chokes on them).
    await h.redis.zadd(`${h.prefix}:hb:ct:${id}`, 3, 'n', 900, 'sum', 500, 'max');
    await h.redis
      .multi()
      .hset(h.keys.heartbeat(id), {
        last_seen: ago(3000).toISOString(),
        status: 'active',
        collection_times: 'zset',
        collection_time_ms: '400',
      })
      .sadd(h.keys.heartbeatDirty, id)
      .exec();
    await h.writer.heartbeats.flushHeartbeats();
    expect(await collector(id)).toMatchObject({ avg_collection_time_ms: 400, max_collection_time_ms: 400 });
    // An older edge (no mark) in a rolling upgrade, its report after one from a new edge.
    await report(id, ago(2000), 600);
    await h.redis
      .multi()
      .del(h.keys.heartbeat(id))
      .hset(h.keys.heartbeat(id), { last_seen: ago(1000).toISOString(), status: 'active', collection_time_ms: '800' })
      .sadd(h.keys.heartbeatDirty, id)
      .exec();
    await h.writer.heartbeats.flushHeartbeats();
    expect(await collector(id)).toMatchObject({
      avg_collection_time_ms: Math.round(400 * 0.8 ** 2 + 700 * (1 - 0.8 ** 2)),
      max_collection_time_ms: 800,
    });
    // Flushed again (re-marked dirty): nothing applied twice.
    await h.redis.sadd(h.keys.heartbeatDirty, id);
    await h.writer.heartbeats.flushHeartbeats();
    expect(await collector(id)).toMatchObject({
      max_collection_time_ms: 800,
      avg_collection_time_ms: Math.round(400 * 0.8 ** 2 + 700 * (1 - 0.8 ** 2)),
    });
  });

  it('reports piled up behind an older writer (a rolling upgrade) count only after the last heartbeat it applied', async () => {
    const id = await insertCollector(h.pool);
    await report(id, ago(6000), 1000);
    await report(id, ago(5000), 3000);
    // The older writer applied the latest hash's collection_time_ms (3000) and left the reports.
    await h.pool.query(
      'UPDATE collectors SET last_heartbeat = $2, avg_collection_time_ms = 3000, max_collection_time_ms = 3000 WHERE id = $1',
      [id, (await h.redis.hget(h.keys.heartbeat(id), 'last_seen'))!],
    );
    await report(id, ago(1000), 500);
    await h.writer.heartbeats.flushHeartbeats();
    expect(await collector(id)).toMatchObject({
      avg_collection_time_ms: Math.round(3000 * 0.8 + 500 * 0.2),
      max_collection_time_ms: 3000,
    });
  });

  it('a figure out of int range fails nothing: the report is dropped, the batch flushed', async () => {
    const [id, other] = await Promise.all([insertCollector(h.pool), insertCollector(h.pool)]);
    const seen = ago(1000);
    await report(other, seen, 20);
    await report(id, seen, 10);
    await h.redis.zadd(h.keys.heartbeatCollectionTimes(id), seen.getTime() - 1, `${seen.getTime() - 1}:99999999999`);
    expect(await h.writer.heartbeats.flushHeartbeats()).toBe(2);
    expect(await collector(id)).toMatchObject({ avg_collection_time_ms: 10, max_collection_time_ms: 10 });
    expect(await collector(other)).toMatchObject({ avg_collection_time_ms: 20 });
    expect(await h.redis.exists(h.keys.heartbeatCollectionTimes(id))).toBe(0);
  });
});
