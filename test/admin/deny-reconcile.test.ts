import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { readDenyState } from '@pga/redis-keys';
import { reconcileDenyState } from '../../services/admin-api/src/collectors/reconcile-deny-state';
import { createHarness, type Harness } from './harness';
import { form } from './fixtures';

describe('deny state reconciliation', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await createHarness();
  });
  afterAll(async () => h?.[Symbol.asyncDispose]());

  it('re-publishes what PostgreSQL refuses when Redis lost it, at start and after a reconnect, and nothing else', async () => {
    const admin = h.caller(h.admin);
    const { deps } = h.service;
    const disabled = (await admin.collectors.register(form())).collector.id;
    const deleted = (await admin.collectors.register(form())).collector.id;
    const rotated = await admin.collectors.register(form());
    const healthy = (await admin.collectors.register(form())).collector.id;
    await admin.collectors.disable({ id: disabled });
    await admin.collectors.delete({ id: deleted });
    await admin.collectors.rotateToken({ id: rotated.collector.id });
    const oldJti = (await deps.tokens.verify(rotated.token)).jti;
    const before = await readDenyState(deps.redis, deps.keys);

    expect([...before.deleted]).toContain(deleted);
    expect(before.deleted.has(disabled)).toBe(false);

    // Redis loses the sets (a restart without persistence)
    await deps.redis.del(deps.keys.deniedJtis, deps.keys.deniedCollectors, deps.keys.deletedCollectors);
    expect(await reconcileDenyState(deps)).toBe(3);
    const after = await readDenyState(deps.redis, deps.keys);
    expect([...after.collectors].sort()).toEqual([disabled, deleted].sort());
    expect([...after.deleted]).toEqual([deleted]);
    expect(after.jtis).toEqual(before.jtis);
    expect(after.jtis.has(oldJti)).toBe(true);
    expect(after.collectors.has(healthy)).toBe(false);
    expect(after.version).toBeGreaterThan(before.version);
    expect(await reconcileDenyState(deps)).toBe(0);
    // Only the deleted set lost (a deny state written before it existed): the deleted one is re-marked.
    await deps.redis.del(deps.keys.deletedCollectors);
    expect(await reconcileDenyState(deps)).toBe(1);
    expect([...(await readDenyState(deps.redis, deps.keys)).deleted]).toEqual([deleted]);

    // the same happens by itself when the admin's Redis connection comes back
    await deps.redis.del(deps.keys.deniedJtis, deps.keys.deniedCollectors);
    deps.redis.disconnect(true);
    await expect.poll(async () => (await readDenyState(deps.redis, deps.keys)).collectors.size, { timeout: 10_000 }).toBe(2);
  });
});
