import pg from 'pg';
import { expect, it } from 'vitest';
import { reconcileDenyState } from '../../services/admin-api/src/collectors/reconcile-deny-state';
import { createHarness, harnessOnOwnRedis } from './harness';
import { form } from './fixtures';

it('a lost enable together with a lost token rotation is repaired: the collector leaves the denied set', async () => {
  const h = await createHarness();
  try {
    const caller = h.caller(h.admin);
    const { deps } = h.service;
    const x = await caller.collectors.register(form());
    const id = x.collector.id;
    await caller.collectors.disable({ id });
    expect(await deps.redis.sismember(deps.keys.deniedCollectors, id)).toBe(1);
    // Redis refusing writes: the enable and the rotation commit in PostgreSQL, their publishes are lost.
    const deniedBefore = await deps.redis.smembers(deps.keys.deniedJtis);
    const deniedAt = await deps.redis.hget(deps.keys.deniedAt, id);
    expect(deniedAt).toMatch(/^\d+$/);
    await caller.collectors.enable({ id });
    await caller.collectors.rotateToken({ id });
    // undo what the two publishes did (= they were lost)
    // (the enable's MULTI removed the member and its recorded deny time together)
    await deps.redis.sadd(deps.keys.deniedCollectors, id);
    await deps.redis.hset(deps.keys.deniedAt, id, deniedAt!);
    const added = (await deps.redis.smembers(deps.keys.deniedJtis)).filter((j) => !deniedBefore.includes(j));
    expect(added.length).toBeGreaterThan(0);
    await deps.redis.srem(deps.keys.deniedJtis, ...added);
    // one successful repair run (what the 2 s loop does; it stops after a success)
    await reconcileDenyState(deps);
    expect(await deps.redis.sismember(deps.keys.deniedCollectors, id)).toBe(0);
  } finally {
    await h[Symbol.asyncDispose]();
  }
});

it('a publish lost while a repair run is under way is repaired too (another run follows it)', { timeout: 60_000 }, async () => {
  const { h, redis, close } = await harnessOnOwnRedis('repair-lost');
  const locker = new pg.Client({ connectionString: h.service.deps.config.DATABASE_URL });
  await locker.connect();
  try {
    const caller = h.caller(h.admin);
    const { deps } = h.service;
    await expect.poll(() => deps.redis.status).toBe('ready');
    const a = (await caller.collectors.register(form())).collector.id;
    const b = (await caller.collectors.register(form())).collector.id;
    // A: disabled in PostgreSQL, its publish lost (not in the denied set): the repair has work on it
    await deps.pool.query('UPDATE collectors SET enabled = false WHERE id = $1', [a]);
    // hold A's row: the repair run blocks in its SELECT … FOR UPDATE
    await locker.query('BEGIN');
    await locker.query('SELECT 1 FROM collectors WHERE id = $1 FOR UPDATE', [a]);
    deps.redisWriteLost(); // the loop is scheduled (as publishChange does after 3 failures)
    await expect
      .poll(
        async () =>
          (
            await locker.query(
              "SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()",
            )
          ).rows[0].n,
        { timeout: 10_000 },
      )
      .toBe(1);
    // While the run is blocked: Redis refuses writes, an admin disables B, its publish is lost.
    await redis.config('SET', 'maxmemory', '1');
    await caller.collectors.disable({ id: b });
    await redis.config('SET', 'maxmemory', '0');
    await locker.query('COMMIT');
    await expect.poll(() => deps.redis.sismember(deps.keys.deniedCollectors, a), { timeout: 10_000 }).toBe(1);
    // B must follow within a few seconds (the loop runs every 2 s until a run succeeds)
    await expect.poll(() => deps.redis.sismember(deps.keys.deniedCollectors, b), { timeout: 8_000 }).toBe(1);
  } finally {
    await locker.end().catch(() => undefined);
    await close();
  }
});
