import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { createHarness, type Harness } from './harness';
import { expectRejected, form } from './fixtures';

describe('audit.list', () => {
  let h: Harness;
  let collectorId: string;
  beforeAll(async () => {
    h = await createHarness();
    const admin = h.caller(h.admin, { ip: '203.0.113.7', userAgent: 'Mozilla/5.0 test' });
    collectorId = (await admin.collectors.register(form())).collector.id;
    await admin.collectors.update({ id: collectorId, description: 'changed' });
    await admin.collectors.sendCommand({ id: collectorId, action: 'stop' });
    await admin.collectors.rotateToken({ id: collectorId });
    await admin.collectors.delete({ id: collectorId });
    await admin.collectors.restore({ id: collectorId });
    await admin.groups.create({ name: 'audited group' });
    await h
      .caller(null)
      .auth.login({ username: 'alice', password: 'wrong' })
      .catch(() => undefined);
  });
  afterAll(async () => h?.[Symbol.asyncDispose]());

  it('records each change with actor id and name, IP and user agent, filterable by collector', async () => {
    const { items, total } = await h.caller(h.viewer).audit.list({ collector_id: collectorId });
    expect(total).toBe(6);
    expect(items.map((i) => i.action)).toEqual([
      'collector.restored',
      'collector.deleted',
      'collector.token_rotated',
      'collector.command',
      'collector.updated',
      'collector.registered',
    ]);
    for (const item of items)
      expect(item).toMatchObject({
        actor_id: h.admin.id,
        actor_name: 'alice',
        ip_address: '203.0.113.7',
        user_agent: 'Mozilla/5.0 test',
      });
    expect(items[4]).toMatchObject({ old_values: { description: null }, new_values: { description: 'changed' } });
  });

  it('filters by actor, action (exact or prefix), entity and time range, with pagination', async () => {
    const caller = h.caller(h.viewer);
    expect((await caller.audit.list({ action: 'group.created' })).items.map((i) => i.new_values?.name)).toEqual([
      'audited group',
    ]);
    expect((await caller.audit.list({ action: 'collector.' })).total).toBe(6);
    expect((await caller.audit.list({ action: 'user.login_failed' })).items[0]).toMatchObject({
      actor_name: 'alice',
      details: { reason: 'wrong_password' },
    });
    expect((await caller.audit.list({ actor_id: h.admin.id })).total).toBe(8);
    expect((await caller.audit.list({ entity_type: 'group' })).total).toBe(1);
    const future = new Date(Date.now() + 60_000).toISOString();
    expect((await caller.audit.list({ from: future })).total).toBe(0);
    expect((await caller.audit.list({ to: future })).total).toBe(8);
    const page = await caller.audit.list({ page: 2, page_size: 3 });
    expect(page).toMatchObject({ total: 8, page: 2, page_size: 3 });
    expect(page.items).toHaveLength(3);
    await expectRejected(h.caller(null).audit.list({}), 'UNAUTHORIZED');
    await expectRejected(caller.audit.list({ from: 'yesterday' }), 'BAD_REQUEST', 'from');
  });
});
