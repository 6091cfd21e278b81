import { expect, it } from 'vitest';
import { call, spawnEdge, type EdgeProcess } from '../edge/harness';
import { edgeEnvOf, harnessOnOwnRedis } from './harness';
import { form } from './fixtures';

/**
 * An admin disables a collector and revokes a token while Redis is up but refuses writes (over its
 * maxmemory with noeviction here; MISCONF after a failed AOF write, READONLY after a failover
 * alike). PostgreSQL commits; the publish to the edges fails its three attempts. The reconciliation
 * that repairs a lost publish ran only on a Redis (re)connect, which a refusing Redis never causes:
 * once Redis took writes again, every running edge kept accepting the disabled collector and the
 * revoked token until its 10-minute reload (CONTRACT.md: within one second). Uses its own Redis.
 */
it(
  'a change published while Redis refused writes reaches the edges once Redis takes writes again',
  { timeout: 90_000 },
  async () => {
    const { h, redis, redisUrl, close } = await harnessOnOwnRedis('refused-pub');
    let edge: EdgeProcess | undefined;
    try {
      const caller = h.caller(h.admin);
      const disabled = await caller.collectors.register(form());
      const revoked = await caller.collectors.register(form());
      const healthy = await caller.collectors.register(form());
      const reenabled = await caller.collectors.register(form());
      await caller.collectors.disable({ id: reenabled.collector.id });
      edge = await spawnEdge(edgeEnvOf(h, redisUrl));
      let n = 0;
      const push = async (token: string) => {
        const res = await call(`${edge!.url}/api/v1/metrics/push`, { token, body: `{"n":${++n}}` });
        return [res.status, res.json?.error?.code ?? 'ok'];
      };
      expect(await push(disabled.token)).toEqual([200, 'ok']);
      expect(await push(revoked.token)).toEqual([200, 'ok']);
      expect(await push(reenabled.token)).toEqual([403, 'COLLECTOR_DISABLED']);
      const heartbeat = async () => {
        const res = await call(`${edge!.url}/api/v1/collectors/${reenabled.collector.id}/heartbeat`, {
          token: reenabled.token,
          body: '{}',
        });
        return res.json?.config_version;
      };
      const pgVersion = async () =>
        (await h.service.deps.pool.query('SELECT config_version FROM collectors WHERE id = $1', [reenabled.collector.id])).rows[0]
          .config_version as number;

      await redis.config('SET', 'maxmemory', '1');
      await caller.collectors.disable({ id: disabled.collector.id });
      const rotated = await caller.collectors.rotateToken({ id: revoked.collector.id });
      await caller.collectors.enable({ id: reenabled.collector.id });
      const enabledVersion = await pgVersion();
      await redis.config('SET', 'maxmemory', '0');

      await expect.poll(() => push(healthy.token), { timeout: 10_000 }).toEqual([200, 'ok']);
      // A few seconds for a retry of the lost publish; the edge's own reload comes only after 10 minutes.
      await expect.poll(() => push(disabled.token), { timeout: 8_000, interval: 250 }).toEqual([403, 'COLLECTOR_DISABLED']);
      await expect.poll(() => push(revoked.token), { timeout: 8_000, interval: 250 }).toEqual([401, 'UNAUTHORIZED']);
      expect(await push(rotated.token)).toEqual([200, 'ok']);
      // An enable lost the same way left the collector refused by every edge for good (an edge's
      // reload takes the union of Redis's denied set and PostgreSQL's), and its heartbeat said the old
      // config_version, so the collector never pulled its config again.
      await expect.poll(() => push(reenabled.token), { timeout: 8_000, interval: 250 }).toEqual([200, 'ok']);
      await expect.poll(heartbeat, { timeout: 8_000, interval: 250 }).toBe(enabledVersion);
    } finally {
      await edge?.stop();
      await close();
    }
  },
);
