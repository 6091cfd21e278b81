import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../helpers';
import { insertCollector, startWriterHarness, waitUntil } from './helpers';

/** A database of its own: the table's statistics count only this test's updates. */
describe('writer: heartbeat flushes', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('update collectors in place (HOT): no index entry per heartbeat (migration 0040)', async () => {
    await using h = await startWriterHarness(db.url, { WRITER_HEARTBEAT_FLUSH_MS: '60000', WRITER_SWEEP_INTERVAL_MS: '3600000' });
    // After the writer's maintenance run at start (a transaction running beside the flushes keeps
    // the old row versions from being pruned, and so the pages from having room).
    await waitUntil('the maintenance run at start', async () =>
      /^writer_maintenance_runs_total\{task="partitions",outcome="ok"\} [1-9]/m.test(
        await (await fetch(`${h.url}/metrics`)).text(),
      ),
    );
    const ids: string[] = [];
    for (let i = 0; i < 200; i++) ids.push(await insertCollector(h.pool));
    const stats = async () =>
      (
        await h.pool.query<{ updates: number; hot: number }>(
          `SELECT n_tup_upd::int AS updates, n_tup_hot_upd::int AS hot FROM pg_stat_user_tables WHERE relname = 'collectors'`,
        )
      ).rows[0]!;
    const before = await stats();
    const rounds = 10;
    for (let r = 0; r < rounds; r++) {
      const seen = new Date(Date.now() - 60_000 * (rounds - r)).toISOString();
      const heartbeats = h.redis.multi();
      for (const id of ids)
        heartbeats
          .hset(h.keys.heartbeat(id), {
            last_seen: seen,
            status: 'active',
            metrics_count: '13',
            collection_time_ms: String(100 + r),
          })
          .sadd(h.keys.heartbeatDirty, id);
      await heartbeats.exec();
      expect(await h.writer.heartbeats.flushHeartbeats()).toBe(ids.length);
    }
    // A backend reports its statistics within seconds, not at each commit.
    await waitUntil('the statistics', async () => (await stats()).updates - before.updates >= ids.length * rounds, 30_000, 200);
    const after = await stats();
    // With last_heartbeat indexed none can be HOT (0 exactly). Without, 99.5 % on a quiet machine;
    // old row versions that concurrent transactions keep from being pruned lower it (0.6 seen with
    // every writer test file running at once).
    expect((after.hot - before.hot) / (after.updates - before.updates)).toBeGreaterThan(0.5);
  });
});
