import { Redis } from 'ioredis';
import { expect, it, vi } from 'vitest';
import { reconcileDenyState } from '../../services/admin-api/src/collectors/reconcile-deny-state';
import { call, spawnEdge } from '../edge/harness';
import { testEnv } from '../helpers';
import { createHarness, edgeEnvOf } from './harness';
import { form } from './fixtures';

/**
 * PostgreSQL restored from a backup older than a disable (or a delete), Redis kept: the restored
 * row says "enabled / not deleted" and the audit log lacks the disable. The admin service's repair
 * (at its start, on each Redis reconnect, after Redis data loss) took such a collector out of the
 * deny sets, taking PostgreSQL's "enabled" for a lost enable: a collector the admin disabled was
 * admitted again. Now it stays refused, at the edges too, until an admin enables it again.
 */
it(
  'PostgreSQL restored behind a disable: the repair keeps the collector refused (edge 403) until an admin enables it again',
  { timeout: 90_000 },
  async () => {
    await using h = await createHarness();
    const redis = new Redis(testEnv.redisUrl);
    const { deps } = h.service;
    const keys = deps.keys;
    let edge = await spawnEdge(edgeEnvOf(h, testEnv.redisUrl));
    try {
      const caller = h.caller(h.admin);
      const reg = await caller.collectors.register(form());
      const id = reg.collector.id;
      const heartbeat = async () =>
        (await call(`${edge.url}/api/v1/collectors/${id}/heartbeat`, { token: reg.token, body: '{}' })).status;
      expect(await heartbeat()).toBe(200);
      // The "backup" is taken here: enabled, nothing audited since.
      const backupAt = (await deps.pool.query<{ t: Date }>('SELECT clock_timestamp() AS t')).rows[0]!.t;
      const before = (
        await deps.pool.query('SELECT enabled, last_modified_at, last_modified_by, updated_at FROM collectors WHERE id = $1', [
          id,
        ])
      ).rows[0];

      await caller.collectors.disable({ id });
      expect(await heartbeat()).toBe(403);
      expect(await redis.hexists(keys.deniedAt, id)).toBe(1);

      // PostgreSQL restored to the backup: the row as it was, the audit entries since gone.
      await deps.pool.query(
        'UPDATE collectors SET enabled = $2, last_modified_at = $3, last_modified_by = $4, updated_at = $5 WHERE id = $1',
        [id, before.enabled, before.last_modified_at, before.last_modified_by, before.updated_at],
      );
      await deps.pool.query('DELETE FROM collector_audit_log WHERE created_at > $1', [backupAt]);

      const error = vi.spyOn(deps.logger, 'error');
      await reconcileDenyState(deps);
      expect(await redis.sismember(keys.deniedCollectors, id)).toBe(1);
      expect(error.mock.calls.map((c) => [c[0], c[1]])).toContainEqual([
        expect.objectContaining({ ids: [id] }),
        expect.stringContaining('PostgreSQL says enabled but Redis holds a later disable'),
      ]);
      expect(await heartbeat()).toBe(403);
      // A config edit after the restore is no enable: the next repair keeps it refused as well.
      await caller.collectors.update({ id, collection_interval: 120 });
      await reconcileDenyState(deps);
      expect(await redis.sismember(keys.deniedCollectors, id)).toBe(1);

      // An edge started now (its load unions PostgreSQL's deny state with Redis's) refuses it too.
      await edge.stop();
      edge = await spawnEdge(edgeEnvOf(h, testEnv.redisUrl));
      expect(await heartbeat()).toBe(403);

      // The admin's explicit enable wins, though PostgreSQL already says enabled.
      await caller.collectors.enable({ id });
      expect(await redis.sismember(keys.deniedCollectors, id)).toBe(0);
      expect(await redis.hexists(keys.deniedAt, id)).toBe(0);
      await expect.poll(heartbeat, { timeout: 5_000 }).toBe(200);
      await reconcileDenyState(deps);
      expect(await redis.sismember(keys.deniedCollectors, id)).toBe(0);
    } finally {
      await edge.stop();
      redis.disconnect();
    }
  },
);

it(
  'PostgreSQL restored behind a delete: the repair keeps the collector in both deny sets; an enable admits it',
  { timeout: 60_000 },
  async () => {
    await using h = await createHarness();
    const { deps } = h.service;
    const { redis, keys } = deps;
    const caller = h.caller(h.admin);
    const id = (await caller.collectors.register(form())).collector.id;
    const backupAt = (await deps.pool.query<{ t: Date }>('SELECT clock_timestamp() AS t')).rows[0]!.t;
    await caller.collectors.delete({ id });
    expect(await redis.sismember(keys.deletedCollectors, id)).toBe(1);

    await deps.pool.query('UPDATE collectors SET deleted_at = NULL, last_modified_at = NULL WHERE id = $1', [id]);
    await deps.pool.query('UPDATE collector_tokens SET revoked_at = NULL WHERE collector_id = $1', [id]);
    await deps.pool.query('DELETE FROM collector_audit_log WHERE created_at > $1', [backupAt]);

    await reconcileDenyState(deps);
    expect(await redis.sismember(keys.deniedCollectors, id)).toBe(1);
    expect(await redis.sismember(keys.deletedCollectors, id)).toBe(1);

    await caller.collectors.enable({ id });
    expect(await redis.sismember(keys.deniedCollectors, id)).toBe(0);
    expect(await redis.sismember(keys.deletedCollectors, id)).toBe(0);
    await reconcileDenyState(deps);
    expect(await redis.sismember(keys.deniedCollectors, id)).toBe(0);
  },
);

it('a denied entry without a recorded time (from before the times were recorded) is kept; one PostgreSQL refuses gets its time', async () => {
  await using h = await createHarness();
  const { deps } = h.service;
  const { redis, keys } = deps;
  const caller = h.caller(h.admin);
  const a = (await caller.collectors.register(form())).collector.id;
  const b = (await caller.collectors.register(form())).collector.id;
  await caller.collectors.disable({ id: a });
  await caller.collectors.disable({ id: b });
  await caller.collectors.enable({ id: a });
  // As an older admin service left them: in the denied set, no time.
  await redis.sadd(keys.deniedCollectors, a);
  await redis.hdel(keys.deniedAt, a, b);
  await reconcileDenyState(deps);
  expect(await redis.sismember(keys.deniedCollectors, a)).toBe(1);
  expect(await redis.hexists(keys.deniedAt, a)).toBe(0);
  expect(await redis.hexists(keys.deniedAt, b)).toBe(1);
});
