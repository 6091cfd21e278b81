import type { PoolClient } from 'pg';
import { expect, it, vi } from 'vitest';
import { reconcileDenyState, repairConfigVersions } from '../../services/admin-api/src/collectors/reconcile-deny-state';
import { form } from './fixtures';
import { createHarness } from './harness';

type Query = PoolClient['query'];

/**
 * An enable whose transaction began before a concurrent disable's but took the row lock after it
 * (commit order: disable, then enable), and whose publish Redis refused. With both times from
 * `now()` (transaction start) the enable's audit entry read as earlier than the disable's deny time:
 * the repair took PostgreSQL's "enabled" for a restored row and kept the collector refused for good,
 * with an error blaming a restore. Times are taken under the row lock now (`clock_timestamp()`).
 */
it('repairs a lost enable that committed after a disable it began before', { timeout: 60_000 }, async () => {
  await using h = await createHarness();
  const { deps } = h.service;
  const { redis, keys, pool } = deps;
  const caller = h.caller(h.admin);
  const id = (await caller.collectors.register(form())).collector.id;

  // The enable's client waits between BEGIN and its row lock (a paused process), until released.
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let begun!: () => void;
  const enableBegun = new Promise<void>((r) => (begun = r));
  const connect = pool.connect.bind(pool) as () => Promise<PoolClient>;
  (pool as unknown as { connect: () => Promise<PoolClient> }).connect = async () => {
    (pool as unknown as { connect: () => Promise<PoolClient> }).connect = connect;
    const client = await connect();
    const query = client.query.bind(client) as (...a: unknown[]) => Promise<unknown>;
    client.query = ((text: unknown, ...rest: unknown[]) => {
      if (text === 'BEGIN') return query(text, ...rest).finally(() => begun());
      if (typeof text === 'string' && text.includes('FOR UPDATE')) {
        client.query = query as Query;
        return gate.then(() => query(text, ...rest));
      }
      return query(text, ...rest);
    }) as Query;
    return client;
  };

  const enabling = caller.collectors.enable({ id });
  await enableBegun;
  await new Promise((r) => setTimeout(r, 20));
  await caller.collectors.disable({ id }); // began after the enable; locks, commits and publishes first

  // The enable's publish is refused (Redis out of memory for a moment).
  const multi = redis.multi.bind(redis);
  redis.multi = ((...a: Parameters<typeof multi>) => {
    const m = multi(...a);
    m.exec = () => Promise.reject(new Error('OOM command not allowed when used memory > maxmemory (simulated)'));
    return m;
  }) as typeof redis.multi;
  const error = vi.spyOn(deps.logger, 'error');
  release();
  await expect(enabling).resolves.toMatchObject({ enabled: true });
  redis.multi = multi;

  await reconcileDenyState(deps);
  expect((await pool.query('SELECT enabled FROM collectors WHERE id = $1', [id])).rows[0].enabled).toBe(true);
  expect(await redis.sismember(keys.deniedCollectors, id)).toBe(0);
  expect(error.mock.calls.map((c) => String(c[1]))).not.toContainEqual(expect.stringContaining('restored from a backup'));
});

/**
 * No restore at all: an ordinary config edit between the repair's read of PostgreSQL and its Redis
 * script. Redis (2) was above the repair's stale read (1): taken for a restore, the row was bumped
 * to 3 with an error line. Redis is read first now: it is written only after PostgreSQL commits.
 */
it('does not take a config edit racing the version repair for a PostgreSQL restore', async () => {
  await using h = await createHarness();
  const { deps } = h.service;
  const caller = h.caller(h.admin);
  const id = (await caller.collectors.register(form({ collection_interval: 60 }))).collector.id;
  const evalScript = deps.redis.eval.bind(deps.redis) as (...a: unknown[]) => Promise<unknown>;
  let once = true;
  (deps.redis as unknown as { eval: (...a: unknown[]) => Promise<unknown> }).eval = async (...args: unknown[]) => {
    if (once) {
      once = false;
      await caller.collectors.update({ id, collection_interval: 120 }); // PostgreSQL 2, then Redis 2
    }
    return evalScript(...args);
  };
  const error = vi.spyOn(deps.logger, 'error');
  await repairConfigVersions(deps);
  (deps.redis as unknown as { eval: typeof evalScript }).eval = evalScript;
  expect(error).not.toHaveBeenCalled();
  expect((await deps.pool.query('SELECT config_version FROM collectors WHERE id = $1', [id])).rows[0].config_version).toBe(2);
  expect(await deps.redis.hget(deps.keys.configVersions, id)).toBe('2');
});
