import { expect, it } from 'vitest';
import { call, spawnEdge, type EdgeProcess } from '../edge/harness';
import { edgeEnvOf, harnessOnOwnRedis } from './harness';
import { form } from './fixtures';

/**
 * Redis emptied under running services without a reconnect (a FLUSHALL by mistake; a failover to an
 * unsynced replica behind one address alike). Nothing noticed it but the writers' schedule check:
 * the edges logged nothing while the pushes they had acknowledged were gone, and the admin service
 * re-published the deny sets and config versions only after a reconnect. Uses its own Redis.
 */
it(
  'Redis emptied: every edge process says so (log line and edge_redis_data_lost_total), and the admin service puts the deny state back',
  { timeout: 90_000 },
  async () => {
    const { h, redis, redisUrl, close } = await harnessOnOwnRedis('data-lost');
    const keys = h.service.deps.keys;
    let edge: EdgeProcess | undefined;
    try {
      const caller = h.caller(h.admin);
      const disabled = await caller.collectors.register(form());
      await caller.collectors.disable({ id: disabled.collector.id });
      edge = await spawnEdge(edgeEnvOf(h, redisUrl, 'info'));
      const lostCount = async () =>
        Number(/^edge_redis_data_lost_total (\S+)/m.exec((await call(`${edge!.url}/metrics`, { method: 'GET' })).text)?.[1]);
      expect(await lostCount()).toBe(0);
      expect(await redis.sismember(keys.deniedCollectors, disabled.collector.id)).toBe(1);
      expect(await redis.get(keys.dataEpoch)).toBeTruthy();

      await redis.flushall();

      await expect.poll(lostCount, { timeout: 15_000, interval: 250 }).toBe(1);
      expect(edge.output()).toContain('Redis lost its data (FLUSHALL');
      await expect
        .poll(() => redis.sismember(keys.deniedCollectors, disabled.collector.id), { timeout: 15_000, interval: 250 })
        .toBe(1);
      // Once: the epoch set again is the one every process sees from now on.
      await new Promise((r) => setTimeout(r, 6_000));
      expect(await lostCount()).toBe(1);
      expect(await call(`${edge.url}/api/v1/metrics/push`, { token: disabled.token, body: '{"n":1}' })).toMatchObject({
        status: 403,
      });
    } finally {
      await edge?.stop();
      await close();
    }
  },
);
