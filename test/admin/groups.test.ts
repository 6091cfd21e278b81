import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { sha256Hex } from '@pga/crypto';
import { createHarness, type Harness } from './harness';
import { expectRejected, form } from './fixtures';

describe('groups, enrollment secrets, dashboards', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await createHarness();
  });
  afterAll(async () => h?.[Symbol.asyncDispose]());
  const admin = () => h.caller(h.admin);
  const q = (sql: string, params: unknown[] = []) => h.service.deps.pool.query(sql, params).then((r) => r.rows);

  it('lists the seeded groups in display order with collector counts', async () => {
    const { items } = await h.caller(h.viewer).groups.list();
    expect(items.map((g) => g.name).slice(0, 3)).toEqual(['AWS RDS', 'On-Premises', 'GCP Cloud SQL']);
    expect(items[0]).toMatchObject({ color: '#FF9900', icon: 'cloud', collector_count: 0 });
  });

  it('creates and updates groups with validation and unique names, audited', async () => {
    const g = await admin().groups.create({ name: 'Hetzner', color: '#00AA00', icon: 'server', display_order: 10 });
    expect(g).toMatchObject({ name: 'Hetzner', color: '#00AA00', collector_count: 0 });
    await expectRejected(admin().groups.create({ name: 'Hetzner' }), 'CONFLICT', 'name');
    await expectRejected(admin().groups.create({ name: 'Bad', color: 'red' }), 'BAD_REQUEST', 'color');
    await expectRejected(admin().groups.create({ name: 'Bad', color: '#12345' }), 'BAD_REQUEST', 'color');
    await expectRejected(admin().groups.create({ name: '' }), 'BAD_REQUEST', 'name');
    await expectRejected(admin().groups.create({ name: 'Bad', icon: 'Not An Icon' }), 'BAD_REQUEST', 'icon');
    await expectRejected(admin().groups.update({ id: g.id, name: 'AWS RDS' }), 'CONFLICT', 'name');
    const updated = await admin().groups.update({ id: g.id, color: '#0000FF' });
    expect(updated.color).toBe('#0000FF');
    const audits = await q(
      "SELECT action, old_values, new_values FROM collector_audit_log WHERE entity_type = 'group' AND entity_id = $1 ORDER BY id",
      [g.id],
    );
    expect(audits.map((a) => a.action)).toEqual(['group.created', 'group.updated']);
    expect(audits[1]).toMatchObject({ old_values: { color: '#00AA00' }, new_values: { color: '#0000FF' } });
    await expectRejected(h.caller(h.viewer).groups.create({ name: 'Viewer group' }), 'FORBIDDEN');
  });

  it('refuses to delete a group that has collectors, naming how many, unless asked to move them', async () => {
    const g = await admin().groups.create({ name: `to-delete-${Date.now()}` });
    for (let i = 0; i < 2; i++) await admin().collectors.register(form({ group: g.name }));
    const err = await admin()
      .groups.delete({ id: g.id })
      .catch((e: unknown) => e as Error);
    expect(err).toMatchObject({ code: 'CONFLICT' });
    expect((err as Error).message).toMatch(/still has 2 collectors/);
    const target = (await admin().groups.list()).items.find((x) => x.name === 'On-Premises')!;
    const before = target.collector_count;
    expect(await admin().groups.delete({ id: g.id, move_collectors_to: target.id })).toEqual({ id: g.id, moved_collectors: 2 });
    expect((await admin().groups.list()).items.find((x) => x.id === target.id)!.collector_count).toBe(before + 2);
    const empty = await admin().groups.create({ name: `empty-${Date.now()}` });
    await admin().groups.delete({ id: empty.id });
    await expectRejected(admin().groups.delete({ id: empty.id }), 'NOT_FOUND');
    const [audit] = await q("SELECT details FROM collector_audit_log WHERE action = 'group.deleted' AND entity_id = $1", [g.id]);
    expect(audit.details).toEqual({ moved_collectors: 2, moved_to: target.id });
  });

  it('creates enrollment secrets shown once (stored as SHA-256), lists and revokes them', async () => {
    const group = (await admin().groups.list()).items[0]!;
    const expires = new Date(Date.now() + 86_400_000).toISOString();
    const created = await admin().enrollment.create({
      name: 'fleet-a',
      group_id: group.id,
      environment: 'staging',
      expires_at: expires,
      max_uses: 3,
    });
    expect(created.secret).toMatch(/^pga_enroll_[A-Za-z0-9_-]{43}$/);
    expect(created.item).toMatchObject({
      name: 'fleet-a',
      group: { id: group.id },
      environment: 'staging',
      max_uses: 3,
      uses: 0,
      state: 'active',
      created_by: 'alice',
    });
    const [row] = await q('SELECT secret_hash FROM enrollment_secrets WHERE id = $1', [created.item.id]);
    expect(row.secret_hash).toBe(sha256Hex(created.secret));
    const listed = await h.caller(h.viewer).enrollment.list();
    expect(JSON.stringify(listed)).not.toContain(created.secret);
    expect(JSON.stringify(listed)).not.toContain(row.secret_hash);
    await q('UPDATE enrollment_secrets SET uses = 3 WHERE id = $1', [created.item.id]);
    expect((await admin().enrollment.list()).items.find((s) => s.id === created.item.id)!.state).toBe('used_up');
    const revoked = await admin().enrollment.revoke({ id: created.item.id });
    expect(revoked.state).toBe('revoked');
    expect((await admin().enrollment.list({ include_inactive: false })).items.map((s) => s.id)).not.toContain(created.item.id);
    await expectRejected(
      admin().enrollment.create({ name: 'past', expires_at: '2000-01-01T00:00:00Z' }),
      'BAD_REQUEST',
      'expires_at',
    );
    await expectRejected(admin().enrollment.create({ name: 'zero', max_uses: 0 }), 'BAD_REQUEST', 'max_uses');
    // The group by name, as collectors.register takes it (it was dropped without a word: no group).
    const byName = await admin().enrollment.create({ name: 'fleet-b', group: group.name });
    expect(byName.item.group).toMatchObject({ id: group.id, name: group.name });
    await expectRejected(admin().enrollment.create({ name: 'fleet-c', group: 'no-such-group' }), 'BAD_REQUEST', 'group');
    await expectRejected(admin().enrollment.create({ name: '' }), 'BAD_REQUEST', 'name');
    await expectRejected(
      admin().enrollment.create({ name: 'g', group_id: '00000000-0000-4000-8000-000000000000' }),
      'BAD_REQUEST',
      'group_id',
    );
    await expectRejected(h.caller(h.viewer).enrollment.create({ name: 'x' }), 'FORBIDDEN');
    const actions = (await q('SELECT action FROM collector_audit_log WHERE entity_id = $1 ORDER BY id', [created.item.id])).map(
      (r) => r.action,
    );
    expect(actions).toEqual(['enrollment.created', 'enrollment.revoked']);
  });

  it('assigns dashboards to a collector and auto-assigns by group, including to collectors that join later', async () => {
    const g = await admin().groups.create({ name: `dash-${Date.now()}` });
    const first = (await admin().collectors.register(form({ group: g.name }))).collector.id;
    await admin().dashboards.assign({ collector_id: first, dashboard_uid: 'pg-overview', dashboard_name: 'PostgreSQL overview' });
    await expectRejected(
      admin().dashboards.assign({ collector_id: first, dashboard_uid: 'not a uid!' }),
      'BAD_REQUEST',
      'dashboard_uid',
    );
    const rule = await admin().dashboards.assignToGroup({
      group_id: g.id,
      dashboard_uid: 'slow-queries',
      dashboard_name: 'Slow queries',
    });
    expect(rule.assigned_collectors).toBe(1);
    const later = (await admin().collectors.register(form({ group: g.name }))).collector.id;
    const outsider = (await admin().collectors.register(form({ group: 'On-Premises' }))).collector.id;
    await admin().collectors.update({ id: outsider, group_id: g.id });
    const uids = async (id: string) =>
      (await admin().collectors.get({ id })).dashboards.map((d) => `${d.dashboard_uid}:${d.auto_assign}`).sort();
    expect(await uids(first)).toEqual(['pg-overview:false', 'slow-queries:true']);
    expect(await uids(later)).toEqual(['slow-queries:true']);
    expect(await uids(outsider)).toEqual(['slow-queries:true']);
    expect((await h.caller(h.viewer).dashboards.list({ group_id: g.id })).group_rules.map((r) => r.dashboard_uid)).toEqual([
      'slow-queries',
    ]);
    expect(
      (await admin().dashboards.unassignFromGroup({ group_id: g.id, dashboard_uid: 'slow-queries' })).removed_assignments,
    ).toBe(3);
    expect(await uids(first)).toEqual(['pg-overview:false']);
    await admin().dashboards.unassign({ collector_id: first, dashboard_uid: 'pg-overview' });
    expect((await h.caller(h.viewer).dashboards.list({ collector_id: first })).assignments).toEqual([]);
    await expectRejected(admin().dashboards.unassign({ collector_id: first, dashboard_uid: 'pg-overview' }), 'NOT_FOUND');
    await expectRejected(h.caller(h.viewer).dashboards.assign({ collector_id: first, dashboard_uid: 'x' }), 'FORBIDDEN');
    const actions = (await q("SELECT action FROM collector_audit_log WHERE action LIKE 'dashboard.%' ORDER BY id")).map(
      (r) => r.action,
    );
    expect(actions).toEqual([
      'dashboard.assigned',
      'dashboard.group_assigned',
      'dashboard.group_unassigned',
      'dashboard.unassigned',
    ]);
  });
});
