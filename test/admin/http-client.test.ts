import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { createTRPCClient, httpBatchLink, httpSubscriptionLink, splitLink, TRPCClientError } from '@trpc/client';
import type { AppRouter } from '@pga/admin-api';
import { ADMIN_PASSWORD, createHarness, type Harness } from './harness';
import { TARGET_PASSWORD, form } from './fixtures';

/** The typed client the web UI and scripts use, with a cookie jar and the same-origin Origin header. */
function client(baseUrl: string) {
  let cookie = '';
  const seen: string[] = [];
  const fetchWithJar: typeof fetch = async (input, init) => {
    const res = await fetch(input, {
      ...init,
      headers: { ...(init?.headers as Record<string, string>), origin: baseUrl, ...(cookie ? { cookie } : {}) },
    });
    const set = res.headers.getSetCookie()[0];
    if (set) cookie = set.split(';')[0]!;
    const text = await res.clone().text();
    seen.push(text);
    return res;
  };
  const api = createTRPCClient<AppRouter>({
    links: [
      splitLink({
        condition: (op) => op.type === 'subscription',
        true: httpSubscriptionLink({ url: `${baseUrl}/trpc` }),
        false: httpBatchLink({ url: `${baseUrl}/trpc`, fetch: fetchWithJar }),
      }),
    ],
  });
  return { api, seen };
}

describe('every procedure over HTTP through @trpc/client', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await createHarness();
    await h.listen();
  });
  afterAll(async () => h?.[Symbol.asyncDispose]());

  it('works end to end for an admin, and never serializes a secret it did not just issue', async () => {
    const { api, seen } = client(h.url);
    await expect(api.collectors.list.query({})).rejects.toBeInstanceOf(TRPCClientError);
    expect((await api.auth.login.mutate({ username: 'alice', password: ADMIN_PASSWORD })).user.role).toBe('admin');
    expect((await api.auth.me.query()).user?.username).toBe('alice');

    const user = await api.users.create.mutate({ username: 'dave', password: 'dave password 12', role: 'viewer' });
    await api.users.update.mutate({ id: user.id, display_name: 'Dave' });
    expect((await api.users.list.query()).items.map((u) => u.username)).toContain('dave');

    const group = await api.groups.create.mutate({ name: 'HTTP group', color: '#123456' });
    await api.groups.update.mutate({ id: group.id, icon: 'server' });
    expect((await api.groups.list.query()).items.find((g) => g.id === group.id)?.icon).toBe('server');

    const reg = await api.collectors.register.mutate(form({ group: 'HTTP group' }));
    const id = reg.collector.id;
    const issuedTokens = [reg.token];
    expect(reg.setup.COLLECTOR_ID).toBe(id);
    await api.collectors.update.mutate({ id, query_limit: 500 });
    expect((await api.collectors.get.query({ id })).query_limit).toBe(500);
    expect((await api.collectors.list.query({ group_id: group.id })).total).toBe(1);
    await api.collectors.disable.mutate({ id });
    await api.collectors.enable.mutate({ id });
    await api.collectors.sendCommand.mutate({ id, action: 'stop' });
    issuedTokens.push((await api.collectors.rotateToken.mutate({ id })).token);
    const tested = await api.collectors.testConnection.mutate({
      type: 'oracle',
      host: 'db.example.com',
      database: 'x',
      username: 'u',
      password: TARGET_PASSWORD,
    });
    expect(tested.supported).toBe(false);

    await api.dashboards.assign.mutate({ collector_id: id, dashboard_uid: 'overview' });
    await api.dashboards.assignToGroup.mutate({ group_id: group.id, dashboard_uid: 'fleet' });
    expect((await api.dashboards.list.query({ collector_id: id })).assignments).toHaveLength(2);
    await api.dashboards.unassignFromGroup.mutate({ group_id: group.id, dashboard_uid: 'fleet' });
    await api.dashboards.unassign.mutate({ collector_id: id, dashboard_uid: 'overview' });

    const secret = await api.enrollment.create.mutate({ name: 'http', max_uses: 2 });
    expect((await api.enrollment.list.query()).items).toHaveLength(1);
    await api.enrollment.revoke.mutate({ id: secret.item.id });

    const bulk = await api.collectors.bulkImport.mutate({
      format: 'json',
      content: JSON.stringify([form({ name: 'http-bulk' })]),
    });
    expect(bulk.created).toBe(1);
    const bulkToken = bulk.tokens_csv!.trim().split('\r\n')[1]!.split(',')[2]!;

    await api.collectors.delete.mutate({ id });
    issuedTokens.push((await api.collectors.restore.mutate({ id })).token);
    await api.groups.delete.mutate({ id: group.id, move_collectors_to: null });
    expect((await api.audit.list.query({ collector_id: id })).total).toBeGreaterThanOrEqual(9);
    expect((await api.deadLetters.list.query()).total).toBe(0);
    await expect(api.deadLetters.retry.mutate({ job_id: 'missing' })).rejects.toMatchObject({ data: { code: 'NOT_FOUND' } });

    // The target password never appears in any answer; each token appears only in the answer that issued it.
    const all = seen.join('\n');
    expect(all).not.toContain(TARGET_PASSWORD);
    const answersWith = (value: string) => seen.filter((text) => text.includes(value)).length;
    for (const token of [...issuedTokens, bulkToken]) expect(answersWith(token)).toBe(1);
    expect(answersWith(secret.secret)).toBe(1);
    expect(all).not.toMatch(/password_encrypted|password_hash|secret_hash|token_hash|scrypt\$/);

    await api.auth.logout.mutate();
    await expect(api.collectors.list.query({})).rejects.toMatchObject({
      data: { code: 'UNAUTHORIZED', appCode: 'UNAUTHORIZED' },
    });
  });

  it('lets a viewer read but not change anything', async () => {
    const { api } = client(h.url);
    await api.auth.login.mutate({ username: 'victor', password: 'viewer password 123' });
    await expect(api.collectors.list.query({})).resolves.toBeTruthy();
    await expect(api.audit.list.query({})).resolves.toBeTruthy();
    await expect(api.collectors.register.mutate(form())).rejects.toMatchObject({ data: { code: 'FORBIDDEN', httpStatus: 403 } });
    await expect(api.groups.create.mutate({ name: 'nope' })).rejects.toMatchObject({ data: { code: 'FORBIDDEN' } });
    await expect(api.users.list.query()).rejects.toMatchObject({ data: { code: 'FORBIDDEN' } });
  });
});
