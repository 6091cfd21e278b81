import { Redis } from 'ioredis';
import { expect, it } from 'vitest';
import { repairConfigVersions } from '../../services/admin-api/src/collectors/reconcile-deny-state';
import { call, spawnEdge } from '../edge/harness';
import { testEnv } from '../helpers';
import { createHarness, edgeEnvOf } from './harness';
import { form } from './fixtures';

/**
 * PostgreSQL restored from a backup older than a config edit, Redis kept: PostgreSQL's
 * config_version went back (here 2 → 1, the backup's), Redis's mirror stayed at 2, and the
 * collector runs the config of version 2 it pulled before. Its agent pulls again only on a higher
 * version (collector/src/agent/agent.ts), so the repair that only raised Redis left it on a config
 * PostgreSQL no longer has, and the next edit (PostgreSQL 1 → 2, mirrored as 2) was never pulled.
 * Now the repair raises PostgreSQL's version past Redis's: the collector pulls what PostgreSQL holds,
 * and every later edit is a version higher still.
 */
it(
  'PostgreSQL restored behind a config edit: the repair raises its config_version past Redis, so the collector pulls again and sees later edits',
  { timeout: 90_000 },
  async () => {
    await using h = await createHarness();
    const redis = new Redis(testEnv.redisUrl);
    const keys = h.service.deps.keys;
    const edge = await spawnEdge(edgeEnvOf(h, testEnv.redisUrl));
    try {
      const caller = h.caller(h.admin);
      const reg = await caller.collectors.register(form({ collection_interval: 60 }));
      const id = reg.collector.id;
      const heartbeat = async () =>
        (await call(`${edge.url}/api/v1/collectors/${id}/heartbeat`, { token: reg.token, body: '{}' })).json.config_version;
      const pull = async () => {
        const res = await call(`${edge.url}/api/v1/collectors/${id}/config`, { token: reg.token, method: 'GET' });
        expect(res.status).toBe(200);
        return res.json as { config_version: number; collection_interval: number };
      };

      // Before the "backup" is version 1; an edit after it makes 2, which the collector pulls.
      expect(await heartbeat()).toBe(1);
      await caller.collectors.update({ id, collection_interval: 120 });
      expect(await heartbeat()).toBe(2);
      let agent = await pull();
      expect(agent).toMatchObject({ config_version: 2, collection_interval: 120 });

      // PostgreSQL restored to the backup: version 1, interval 60. Redis still says 2.
      await h.service.deps.pool.query('UPDATE collectors SET config_version = 1, collection_interval = 60 WHERE id = $1', [id]);
      expect(await redis.hget(keys.configVersions, id)).toBe('2');

      // The admin service's repair (at its start, after a Redis reconnect, or on a data-epoch finding).
      await repairConfigVersions(h.service.deps);
      const hb = await heartbeat();
      expect(hb).toBeGreaterThan(agent.config_version);
      agent = await pull();
      expect(agent).toMatchObject({ config_version: hb, collection_interval: 60 });

      // A later edit is a higher version still: the collector pulls it.
      await caller.collectors.update({ id, query_limit: 55 });
      expect(await heartbeat()).toBeGreaterThan(agent.config_version);
      expect(await pull()).toMatchObject({ query_limit: 55 });
    } finally {
      await edge.stop();
      redis.disconnect();
    }
  },
);
