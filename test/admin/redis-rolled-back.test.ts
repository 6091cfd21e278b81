import { cpSync, rmSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import { expect, it } from 'vitest';
import { startOnFreePort, startRedis, type RedisHandle } from '@pga/local-stack';
import { testEnv, uniquePrefix } from '../helpers';
import { call, spawnEdge, type EdgeProcess } from '../edge/harness';
import { createHarness, edgeEnvOf } from './harness';
import { form } from './fixtures';

/**
 * Redis restored from an older copy of its own data (its AOF from a few minutes ago; alike: a
 * failover to a replica that lagged). The data-epoch id is the old copy's too, so nothing said that
 * the pushes acknowledged since and not yet stored were gone: the edges counted no loss and logged
 * nothing. Now a counter beside the id goes back too, and each process that saw a later value says
 * so. The deny state changed since the copy (a collector disabled, a token rotated) is refused
 * still: the edges union PostgreSQL's with Redis's and the admin service re-publishes it on the
 * reconnect. Uses its own Redis.
 */
it(
  'Redis restored from an older AOF: the edge counts it as lost data and says it went back; later revocations stay refused',
  { timeout: 120_000 },
  async () => {
    const dataDir = path.join(testEnv.dataDir, uniquePrefix('rolled-back'));
    const backup = `${dataDir}-backup`;
    // Any port first; the restarts below must take the same one (its clients know it).
    let server: RedisHandle = await startOnFreePort((port) => startRedis({ dataDir, port }));
    const port = server.port;
    const h = await createHarness({ REDIS_URL: server.url });
    const redis = new Redis(server.url, { maxRetriesPerRequest: 1 });
    redis.on('error', () => undefined);
    const keys = h.service.deps.keys;
    let edge: EdgeProcess | undefined;
    try {
      const caller = h.caller(h.admin);
      const toDisable = await caller.collectors.register(form());
      const toRotate = await caller.collectors.register(form());
      const pusher = await caller.collectors.register(form());
      edge = await spawnEdge(edgeEnvOf(h, server.url, 'info'));
      const lostCount = async () =>
        Number(/^edge_redis_data_lost_total (\S+)/m.exec((await call(`${edge!.url}/metrics`, { method: 'GET' })).text)?.[1]);
      await expect.poll(() => redis.get(keys.dataEpoch), { timeout: 10_000 }).toBeTruthy();

      // The backup: Redis stopped (its AOF flushed) and its folder copied, then started again.
      await server.stop();
      cpSync(dataDir, backup, { recursive: true });
      server = await startRedis({ dataDir, port });
      await expect.poll(async () => (await call(`${edge!.url}/readyz`, { method: 'GET' })).status, { timeout: 15_000 }).toBe(200);

      // After the backup: a revocation, a disable, and a push acknowledged.
      const rotated = await caller.collectors.rotateToken({ id: toRotate.collector.id });
      await caller.collectors.disable({ id: toDisable.collector.id });
      await expect
        .poll(async () => (await call(`${edge!.url}/api/v1/metrics/push`, { token: toDisable.token, body: '{"n":1}' })).status, {
          timeout: 10_000,
        })
        .toBe(403);
      const push = await call(`${edge.url}/api/v1/metrics/push`, {
        token: pusher.token,
        body: '{"n":2}',
        headers: { 'idempotency-key': 'after-backup' },
      });
      expect(push).toMatchObject({ status: 200, json: { duplicate: false } });
      // The edge checks at least once after the backup (on its reconnect, and every 5 s).
      await new Promise((r) => setTimeout(r, 6_000));
      expect(await lostCount()).toBe(0);

      // The restore: Redis stopped, its folder replaced by the backup, started again.
      await server.stop();
      rmSync(dataDir, { recursive: true, force: true });
      cpSync(backup, dataDir, { recursive: true });
      server = await startRedis({ dataDir, port });
      expect(await redis.exists(keys.idempotency(pusher.collector.id, 'after-backup'))).toBe(0);

      await expect.poll(lostCount, { timeout: 20_000, interval: 250 }).toBe(1);
      expect(edge.output()).toContain('Redis went back to an older copy of its data');
      // Once per rollback.
      await new Promise((r) => setTimeout(r, 6_000));
      expect(await lostCount()).toBe(1);
      // What changed after the backup is still refused.
      await expect
        .poll(async () => (await call(`${edge!.url}/api/v1/metrics/push`, { token: toDisable.token, body: '{"n":3}' })).status, {
          timeout: 15_000,
        })
        .toBe(403);
      expect((await call(`${edge.url}/api/v1/metrics/push`, { token: toRotate.token, body: '{"n":4}' })).status).toBe(401);
      expect((await call(`${edge.url}/api/v1/metrics/push`, { token: rotated.token, body: '{"n":5}' })).status).toBe(200);
      await expect
        .poll(() => redis.sismember(keys.deniedCollectors, toDisable.collector.id), { timeout: 15_000, interval: 250 })
        .toBe(1);
    } finally {
      await edge?.stop();
      redis.disconnect();
      await h.service.close().catch(() => undefined);
      await h.db.drop();
      await server.stop();
      rmSync(backup, { recursive: true, force: true });
    }
  },
);
