import { describe, it, beforeAll, afterAll, expect } from 'vitest';
import { createHarness, type Harness } from './harness';
import { expectRejected, form } from './fixtures';

/** Each validation rule outside the registration form (collectors.test.ts covers that) rejects, naming the field. */
describe('validation across procedures', () => {
  let h: Harness;
  let id: string;
  beforeAll(async () => {
    h = await createHarness();
    id = (await h.caller(h.admin).collectors.register(form())).collector.id;
  });
  afterAll(async () => h?.[Symbol.asyncDispose]());
  const admin = () => h.caller(h.admin);

  it('collectors.update', async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ name: '' }, 'name'],
      [{ host: 'a b' }, 'host'],
      [{ port: 0 }, 'port'],
      [{ ssl_mode: 'always' }, 'ssl_mode'],
      [{ ssl_certificate: 'nope' }, 'ssl_certificate'],
      [{ collection_interval: 3601 }, 'collection_interval'],
      [{ tags: ['a b'] }, 'tags.0'],
      [{ environment: 'prod' }, 'environment'],
      [{ group: 'Missing' }, 'group'],
      [{ password: '' }, 'password'],
    ];
    for (const [patch, field] of cases)
      await expectRejected(admin().collectors.update({ id, ...patch } as any), 'BAD_REQUEST', field);
    await expectRejected(admin().collectors.update({ id: 'not-a-uuid' } as any), 'BAD_REQUEST', 'id');
  });

  it('collectors.list, get and audit.list', async () => {
    for (const [input, field] of [
      [{ page: 0 }, 'page'],
      [{ page_size: 501 }, 'page_size'],
      [{ sort: 'password' }, 'sort'],
      [{ status: 'sleeping' }, 'status'],
      [{ group_id: 'x' }, 'group_id'],
    ] as const)
      await expectRejected(admin().collectors.list(input as any), 'BAD_REQUEST', field);
    await expectRejected(admin().collectors.get({ id: 'x' } as any), 'BAD_REQUEST', 'id');
    await expectRejected(admin().audit.list({ page_size: 0 }), 'BAD_REQUEST', 'page_size');
    await expectRejected(admin().audit.list({ collector_id: 'x' } as any), 'BAD_REQUEST', 'collector_id');
  });

  it('U+0000 in any text is a 400 naming the field (PostgreSQL text cannot store it), not a 500', async () => {
    const nul = 'a\u0000b';
    await expectRejected(admin().collectors.update({ id, description: nul }), 'BAD_REQUEST', 'description');
    await expectRejected(admin().collectors.list({ search: nul }), 'BAD_REQUEST', 'search');
    await expectRejected(admin().groups.create({ name: 'Nul group', description: nul }), 'BAD_REQUEST', 'description');
    await expectRejected(admin().collectors.register(form({ tags: ['ok', nul] })), 'BAD_REQUEST', 'tags.1');
    // Nothing was written.
    expect((await admin().collectors.get({ id })).description).toBeNull();
  });

  it('a lone UTF-16 surrogate in any text is a 400 naming the field (jsonb refuses it), not a 500', async () => {
    const group = await admin().groups.create({ name: 'Surrogate group' });
    const auditRows = async () =>
      (await h.service.deps.pool.query('SELECT count(*)::int AS n FROM collector_audit_log')).rows[0].n;
    const before = await auditRows();
    for (const lone of ['\ud800', 'a\udc00', '\udc00\ud800', 'x\ud83d']) {
      await expectRejected(admin().users.update({ id: h.viewer.id, display_name: lone }), 'BAD_REQUEST', 'display_name');
      await expectRejected(admin().collectors.register(form({ name: lone })), 'BAD_REQUEST', 'name');
      await expectRejected(admin().collectors.register(form({ description: lone })), 'BAD_REQUEST', 'description');
      await expectRejected(admin().collectors.update({ id, name: lone }), 'BAD_REQUEST', 'name');
      await expectRejected(admin().collectors.update({ id, description: lone }), 'BAD_REQUEST', 'description');
      await expectRejected(admin().groups.create({ name: lone }), 'BAD_REQUEST', 'name');
      await expectRejected(admin().groups.create({ name: 'g2', description: lone }), 'BAD_REQUEST', 'description');
      await expectRejected(admin().groups.update({ id: group.id, name: lone }), 'BAD_REQUEST', 'name');
      await expectRejected(admin().groups.update({ id: group.id, description: lone }), 'BAD_REQUEST', 'description');
      await expectRejected(admin().enrollment.create({ name: lone }), 'BAD_REQUEST', 'name');
      await expectRejected(
        admin().dashboards.assign({ collector_id: id, dashboard_uid: 'd1', dashboard_name: lone }),
        'BAD_REQUEST',
        'dashboard_name',
      );
      await expectRejected(
        admin().dashboards.assignToGroup({ group_id: group.id, dashboard_uid: 'd1', dashboard_name: lone }),
        'BAD_REQUEST',
        'dashboard_name',
      );
    }
    await expect(admin().groups.update({ id: group.id, description: 'x\ud800' })).rejects.toThrow(
      'description: must not contain an unpaired UTF-16 surrogate (U+D800 to U+DFFF)',
    );
    // Nothing was written, not even U+FFFD in its place.
    expect(await auditRows()).toBe(before);
    expect((await admin().collectors.get({ id })).description).toBeNull();
    expect((await admin().users.list()).items.find((u) => u.id === h.viewer.id)?.display_name).toBe('victor');
    // A surrogate pair (any character beyond U+FFFF) is text like any other.
    const emoji = await admin().groups.create({ name: 'Pair \ud83d\ude00 group', description: '\u{1F418}' });
    expect((await admin().groups.list()).items.find((g) => g.id === emoji.id)?.name).toBe('Pair 😀 group');
  });

  it('a date-time PostgreSQL would refuse is a 400 naming the field, not a 500', async () => {
    const cases: [string, string][] = [
      ['0000-01-01T00:00:00Z', 'expected a year from 0001 to 9999'],
      ['2020-01-01T00:00:00+16:00', 'expected a time zone offset from -15:59 to +15:59'],
      ['2020-01-01T00:00:00-23:59', 'expected a time zone offset from -15:59 to +15:59'],
      [`2020-01-01T00:00:00.${'1'.repeat(200)}Z`, 'expected at most 9 digits of fractional seconds'],
    ];
    for (const [value, message] of cases) {
      await expectRejected(admin().audit.list({ from: value }), 'BAD_REQUEST', 'from');
      await expectRejected(admin().audit.list({ to: value }), 'BAD_REQUEST', 'to');
      await expect(admin().audit.list({ to: value })).rejects.toMatchObject({ cause: { issues: [{ message }] } });
    }
    await expectRejected(
      admin().enrollment.create({ name: 'e', expires_at: '2099-01-01T00:00:00+16:00' }),
      'BAD_REQUEST',
      'expires_at',
    );
    // The extremes PostgreSQL does accept still work.
    const all = await admin().audit.list({ from: '0001-01-01T00:00:00+15:59', to: '9999-12-31T23:59:59.999999999-15:59' });
    expect(all.total).toBeGreaterThan(0);
    const far = await admin().enrollment.create({ name: 'far future', expires_at: '9999-12-31T23:59:59.123456789-15:59' });
    expect(far.item.expires_at).toBe('+010000-01-01T15:58:59.123Z');
  });

  it('every paginated list refuses a page past 1,000,000 alike (deadLetters.list answered 500 from Redis)', async () => {
    const huge = Number.MAX_SAFE_INTEGER;
    await expectRejected(admin().deadLetters.list({ page: huge, page_size: 200 }), 'BAD_REQUEST', 'page');
    await expectRejected(admin().collectors.list({ page: huge, page_size: 500 }), 'BAD_REQUEST', 'page');
    await expectRejected(admin().audit.list({ page: huge, page_size: 500 }), 'BAD_REQUEST', 'page');
    await expect(admin().audit.list({ page: 1_000_001 })).rejects.toMatchObject({
      cause: { issues: [{ message: 'must be at most 1000000' }] },
    });
    // The last page served is past every row here: empty, with the total.
    const last = { page: 1_000_000 };
    expect(await admin().deadLetters.list({ ...last, page_size: 200 })).toMatchObject({ items: [], total: 0, ...last });
    expect(await admin().collectors.list({ ...last, page_size: 500 })).toMatchObject({ items: [], total: 1, ...last });
    expect((await admin().audit.list({ ...last, page_size: 500 })).items).toEqual([]);
  });

  it('a deleted collector is only readable with include_deleted', async () => {
    const gone = (await admin().collectors.register(form())).collector.id;
    await admin().collectors.delete({ id: gone });
    await expectRejected(admin().collectors.get({ id: gone }), 'NOT_FOUND');
    expect((await admin().collectors.get({ id: gone, include_deleted: true })).deleted_at).not.toBeNull();
    await expectRejected(admin().collectors.update({ id: gone, name: 'x' }), 'NOT_FOUND');
    await expectRejected(admin().collectors.sendCommand({ id: gone, action: 'stop' }), 'NOT_FOUND');
    await expectRejected(admin().collectors.rotateToken({ id: gone }), 'NOT_FOUND');
  });

  it('users, groups, dashboards, enrollment, bulk import, dead letters', async () => {
    await expectRejected(
      admin().users.create({ username: 'a b c', password: 'long enough password', role: 'viewer' }),
      'BAD_REQUEST',
      'username',
    );
    await expectRejected(
      admin().users.create({ username: 'ok-name', password: 'long enough password', role: 'root' as any }),
      'BAD_REQUEST',
      'role',
    );
    await expectRejected(
      admin().users.create({ username: 'ok-name', password: 'long enough password', role: 'viewer', email: 'nope' }),
      'BAD_REQUEST',
      'email',
    );
    await expectRejected(admin().users.update({ id: h.viewer.id, password: 'short' }), 'BAD_REQUEST', 'password');
    await expectRejected(admin().users.update({ id: '00000000-0000-4000-8000-000000000000', role: 'admin' }), 'NOT_FOUND');
    await expectRejected(admin().groups.create({ name: 'g', display_order: -1 }), 'BAD_REQUEST', 'display_order');
    await expectRejected(admin().groups.create({ name: 'x'.repeat(256) }), 'BAD_REQUEST', 'name');
    await expectRejected(admin().groups.update({ id: '00000000-0000-4000-8000-000000000000', name: 'x' }), 'NOT_FOUND');
    const group = (await admin().groups.list()).items[0]!;
    await expectRejected(
      admin().groups.delete({ id: group.id, move_collectors_to: group.id }),
      'BAD_REQUEST',
      'move_collectors_to',
    );
    await expectRejected(
      admin().groups.delete({ id: group.id, move_collectors_to: '00000000-0000-4000-8000-000000000000' }),
      'BAD_REQUEST',
      'move_collectors_to',
    );
    await expectRejected(
      admin().dashboards.assign({ collector_id: id, dashboard_uid: 'x'.repeat(41) }),
      'BAD_REQUEST',
      'dashboard_uid',
    );
    await expectRejected(
      admin().dashboards.assign({ collector_id: '00000000-0000-4000-8000-000000000000', dashboard_uid: 'ok' }),
      'NOT_FOUND',
    );
    await expectRejected(
      admin().dashboards.assignToGroup({ group_id: '00000000-0000-4000-8000-000000000000', dashboard_uid: 'ok' }),
      'NOT_FOUND',
    );
    await expectRejected(admin().enrollment.create({ name: 'e', environment: 'qa' as any }), 'BAD_REQUEST', 'environment');
    await expectRejected(admin().enrollment.create({ name: 'e', expires_at: 'tomorrow' }), 'BAD_REQUEST', 'expires_at');
    await expectRejected(admin().enrollment.revoke({ id: '00000000-0000-4000-8000-000000000000' }), 'NOT_FOUND');
    await expectRejected(admin().collectors.bulkImport({ format: 'xml' as any, content: 'x' }), 'BAD_REQUEST', 'format');
    await expectRejected(admin().collectors.bulkImport({ format: 'csv', content: '' }), 'BAD_REQUEST', 'content');
    await expectRejected(admin().collectors.bulkImport({ format: 'csv', content: 'name,type' }), 'BAD_REQUEST', 'content');
    await expectRejected(
      admin().collectors.bulkImport({ format: 'csv', content: 'x', mode: 'some' as any }),
      'BAD_REQUEST',
      'mode',
    );
    await expectRejected(admin().deadLetters.list({ page_size: 1000 }), 'BAD_REQUEST', 'page_size');
    await expectRejected(
      admin().collectors.testConnection({
        type: 'postgresql',
        host: 'h',
        database: 'd',
        username: 'u',
        password: 'p',
        port: 99999,
      }),
      'BAD_REQUEST',
      'port',
    );
    await expectRejected(admin().auth.login({ username: '', password: 'x' }), 'BAD_REQUEST', 'username');
  });
});
