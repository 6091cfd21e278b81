import path from 'node:path';
import { Redis } from 'ioredis';
import { freePort, startRedis, startOnFreePort } from '@pga/local-stack';
import { describe, expect, it } from 'vitest';
import { createHarness } from '../admin/harness';
import { form } from '../admin/fixtures';
import { testEnv, uniquePrefix } from '../helpers';
import { call, spawnEdge, waitUntil, type EdgeProcess } from './harness';

/**
 * Redis loses the deny sets (FLUSHALL here; a restart without persistence or a failover to an
 * empty replica alike) while no admin service runs to re-publish them from PostgreSQL. Edges that
 * (re)load the deny state then must still refuse what PostgreSQL refuses. Uses its own
 * redis-server, so the FLUSHALL touches no other suite.
 */
describe('deny state lost by Redis while the admin service is away', () => {
  it('a reloading and a newly started edge still refuse disabled, revoked and deleted (403 / 401 / 401)', async () => {
    const redisServer = await startOnFreePort((port) =>
      startRedis({ dataDir: path.join(testEnv.dataDir, uniquePrefix('deny-lost-redis')), port }),
    );
    const h = await createHarness({ REDIS_URL: redisServer.url });
    const admin = h.service.deps.config;
    const redis = new Redis(redisServer.url, { maxRetriesPerRequest: 1 });
    redis.on('error', () => undefined);
    const edges: EdgeProcess[] = [];
    let adminRunning = true;
    try {
      // Through the admin service, as an operator would.
      const caller = h.caller(h.admin);
      const disabled = await caller.collectors.register(form());
      const revoked = await caller.collectors.register(form());
      const deleted = await caller.collectors.register(form());
      const healthy = await caller.collectors.register(form());
      await caller.collectors.disable({ id: disabled.collector.id });
      const rotated = await caller.collectors.rotateToken({ id: revoked.collector.id });
      expect(rotated.revoked_tokens).toBe(1);
      await caller.collectors.delete({ id: deleted.collector.id });

      const env = {
        DATABASE_URL: admin.DATABASE_URL,
        REDIS_URL: redisServer.url,
        REDIS_KEY_PREFIX: admin.REDIS_KEY_PREFIX,
        JWT_SECRET: admin.JWT_SECRET,
        ENCRYPTION_KEY: admin.ENCRYPTION_KEY,
        INGEST_HOST: '127.0.0.1',
        EDGE_PROCESSES: '1',
        LOG_LEVEL: 'info',
      };
      const push = (edge: EdgeProcess, token: string) =>
        call(`${edge.url}/api/v1/metrics/push`, { token, body: '{"database":"app","query_count":1}' });
      /** What an edge answers each collector: status and error code. */
      const answers = async (edge: EdgeProcess) => {
        const answer = async (token: string) => {
          const res = await push(edge, token);
          return [res.status, res.json?.error?.code ?? 'ok'];
        };
        return {
          disabled: await answer(disabled.token),
          revoked: await answer(revoked.token),
          deleted: await answer(deleted.token),
          rotated: await answer(rotated.token),
          healthy: await answer(healthy.token),
        };
      };
      const refused = {
        disabled: [403, 'COLLECTOR_DISABLED'],
        revoked: [401, 'UNAUTHORIZED'],
        deleted: [401, 'UNAUTHORIZED'],
        rotated: [200, 'ok'],
        healthy: [200, 'ok'],
      };

      // Healthy state: what the edge answers for each kind.
      const running = await spawnEdge({ ...env, INGEST_PORT: String(await freePort()) });
      edges.push(running);
      expect(await answers(running)).toEqual(refused);

      // The admin service goes away (nothing re-publishes the deny state), then Redis loses its data.
      await h.service.close();
      adminRunning = false;
      await redis.flushall();
      expect(await redis.dbsize()).toBe(0);

      // The running edge's change feed reconnects: it reloads the deny state.
      const loads = () => running.output().split('deny state loaded').length - 1;
      const before = loads();
      await redis.client('KILL', 'TYPE', 'pubsub');
      await waitUntil(() => loads() > before, 10_000, 'the running edge to reload the deny state');
      await waitUntil(async () => (await fetch(`${running.url}/readyz`)).status === 200, 10_000, 'the edge ready again');
      // (Its revoked jtis it kept in memory; the disabled collector it had to learn again.)
      expect.soft(await answers(running), 'the reloaded edge').toEqual(refused);

      // A new edge process loads the deny state at start.
      const fresh = await spawnEdge({ ...env, INGEST_PORT: String(await freePort()) });
      edges.push(fresh);
      expect.soft(await answers(fresh), 'the new edge').toEqual(refused);
    } finally {
      await Promise.all(edges.map((e) => e.stop()));
      redis.disconnect();
      if (adminRunning) await h.service.close().catch(() => undefined);
      await h.db.drop();
      await redisServer.stop();
    }
  });
});
