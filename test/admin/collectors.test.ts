import { randomUUID } from 'node:crypto';
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { Redis } from 'ioredis';
import { hashToken } from '@pga/tokens';
import { readDenyState } from '@pga/redis-keys';
import { ADMIN_PASSWORD, createHarness, httpLogin, trpcHttp, type Harness } from './harness';
import { TARGET_PASSWORD, expectRejected, form } from './fixtures';

describe('collectors', () => {
  let h: Harness;
  let redis: Redis;
  beforeAll(async () => {
    h = await createHarness();
    await h.listen();
    redis = new Redis(process.env.PGA_TEST_REDIS_URL!);
  });
  afterAll(async () => {
    redis?.disconnect();
    await h?.[Symbol.asyncDispose]();
  });
  const admin = () => h.caller(h.admin);
  const q = (sql: string, params: unknown[] = []) => h.service.deps.pool.query(sql, params).then((r) => r.rows);

  it('registers: encrypts the password with the id as associated data, stores only the token hash, returns the token once', async () => {
    const input = form({ ssl_certificate: '-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----' });
    const out = await admin().collectors.register(input);
    const id = out.collector.id;
    expect(out.collector).toMatchObject({
      name: input.name,
      status: 'pending',
      group: { name: 'AWS RDS' },
      has_ssl_certificate: true,
      config_version: 1,
    });
    expect(out.setup).toEqual({ COLLECTOR_JWT_TOKEN: out.token, COLLECTOR_ID: id, CENTRAL_API_URL: 'http://127.0.0.1:18080' });
    expect(out.instructions).toContain(`export COLLECTOR_ID='${id}'`);
    const claims = await h.service.deps.tokens.verify(out.token);
    expect(claims).toMatchObject({ sub: id, type: 'collector' });
    expect(claims.exp - claims.iat).toBe(365 * 24 * 3600);

    const [row] = await q('SELECT password_encrypted, ssl_certificate_encrypted FROM collectors WHERE id = $1', [id]);
    expect(row.password_encrypted).toMatch(/^v1\.k1\./);
    expect(row.password_encrypted).not.toContain(TARGET_PASSWORD);
    expect(h.service.deps.secretBox.decrypt(row.password_encrypted, id)).toBe(TARGET_PASSWORD);
    expect(h.service.deps.secretBox.decrypt(row.ssl_certificate_encrypted, id)).toContain('BEGIN CERTIFICATE');
    // the id is the associated data: the same ciphertext does not decrypt as another collector's
    expect(() => h.service.deps.secretBox.decrypt(row.password_encrypted, '00000000-0000-4000-8000-000000000000')).toThrow();
    // 96-bit random IV: the same password encrypts differently each time
    expect(h.service.deps.secretBox.encrypt(TARGET_PASSWORD, id)).not.toBe(row.password_encrypted);

    const tokens = await q('SELECT jti, token_hash FROM collector_tokens WHERE collector_id = $1', [id]);
    expect(tokens).toEqual([{ jti: claims.jti, token_hash: hashToken(out.token) }]);
    const everything = JSON.stringify(
      await q(
        'SELECT row_to_json(c) AS j FROM collectors c WHERE id = $1 UNION ALL SELECT row_to_json(a) FROM collector_audit_log a',
        [id],
      ),
    );
    expect(everything).not.toContain(out.token);
    expect(everything).not.toContain(TARGET_PASSWORD);

    expect(await redis.hget(h.service.deps.keys.configVersions, id)).toBe('1');
    const [audit] = await q("SELECT * FROM collector_audit_log WHERE action = 'collector.registered' AND collector_id = $1", [
      id,
    ]);
    expect(audit).toMatchObject({ actor_id: h.admin.id, actor_name: 'alice', user_agent: 'vitest' });
    expect(audit.new_values).toMatchObject({
      name: input.name,
      password: '***',
      ssl_certificate: '***',
      tags: ['prod', 'aws', 'rds'],
    });
  });

  it('never returns the password, ciphertext or token from get / list (serialized HTTP answers)', async () => {
    const cookie = await httpLogin(h.url, 'alice', ADMIN_PASSWORD);
    const reg = await trpcHttp(h.url, 'mutation', 'collectors.register', form(), { cookie });
    expect(reg.status).toBe(200);
    const { collector, token } = reg.body.result.data;
    expect(reg.text).not.toContain(TARGET_PASSWORD);
    const [row] = await q('SELECT password_encrypted FROM collectors WHERE id = $1', [collector.id]);
    for (const [kind, path, input] of [
      ['query', 'collectors.get', { id: collector.id }],
      ['query', 'collectors.list', {}],
      ['query', 'collectors.list', { search: collector.name }],
      ['mutation', 'collectors.update', { id: collector.id, description: 'touched' }],
      ['mutation', 'collectors.disable', { id: collector.id }],
      ['mutation', 'collectors.enable', { id: collector.id }],
      ['query', 'audit.list', { collector_id: collector.id }],
    ] as const) {
      const res = await trpcHttp(h.url, kind, path, input, { cookie });
      if (path !== 'audit.list' || res.status === 200) expect(res.status, `${path}: ${res.text}`).toBe(200);
      expect(res.text).not.toContain(TARGET_PASSWORD);
      expect(res.text).not.toContain(token);
      expect(res.text).not.toContain(row.password_encrypted);
      expect(res.text).not.toMatch(/password_encrypted|token_hash/);
    }
  });

  it('answers a duplicate name with CONFLICT on the name field; deleting frees the name; restoring then conflicts', async () => {
    const input = form();
    const first = await admin().collectors.register(input);
    await expectRejected(admin().collectors.register({ ...input, host: '10.0.0.1' }), 'CONFLICT', 'name');
    await admin().collectors.delete({ id: first.collector.id });
    const second = await admin().collectors.register(input);
    expect(second.collector.name).toBe(input.name);
    await expectRejected(admin().collectors.restore({ id: first.collector.id }), 'CONFLICT', 'name');
    // the conflict rolled everything back: still deleted, no extra token
    const [row] = await q('SELECT deleted_at FROM collectors WHERE id = $1', [first.collector.id]);
    expect(row.deleted_at).not.toBeNull();
  });

  it('rejects every invalid field of the form, naming it', async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ name: '' }, 'name'],
      [{ name: 'x'.repeat(256) }, 'name'],
      [{ type: 'sqlserver' }, 'type'],
      [{ environment: 'qa' }, 'environment'],
      [{ host: 'db.example.com:5432' }, 'host'],
      [{ host: 'bad host' }, 'host'],
      [{ host: '' }, 'host'],
      [{ port: 0 }, 'port'],
      [{ port: 65536 }, 'port'],
      [{ port: 5432.5 }, 'port'],
      [{ database: '' }, 'database'],
      [{ username: '' }, 'username'],
      [{ password: '' }, 'password'],
      [{ ssl_mode: 'sometimes' }, 'ssl_mode'],
      [{ ssl_certificate: 'not a certificate' }, 'ssl_certificate'],
      [{ collection_interval: 9 }, 'collection_interval'],
      [{ collection_interval: 3601 }, 'collection_interval'],
      [{ query_limit: 0 }, 'query_limit'],
      [{ query_limit: 10001 }, 'query_limit'],
      [{ tags: ['ok', 'not ok'] }, 'tags.1'],
      [{ description: 'd'.repeat(1001) }, 'description'],
      [{ group: 'No Such Group' }, 'group'],
      [{ group_id: '00000000-0000-4000-8000-000000000000', group: undefined }, 'group_id'],
    ];
    for (const [override, field] of cases)
      await expectRejected(admin().collectors.register(form(override)), 'BAD_REQUEST', field);
    for (const field of ['name', 'type', 'environment', 'host', 'database', 'username', 'password']) {
      const input = form();
      delete input[field];
      await expectRejected(admin().collectors.register(input), 'BAD_REQUEST', field);
    }
    // the design's requireCA / requireFull map to libpq's names; IPv4/IPv6 hosts are fine; port defaults by type
    const ok = await admin().collectors.register(
      form({ ssl_mode: 'requireCA', host: '2001:db8::1', port: undefined, type: 'mysql' }),
    );
    expect(ok.collector).toMatchObject({ ssl_mode: 'verify-ca', host: '2001:db8::1', port: 3306 });
  });

  it('names the field of a validation error over HTTP', async () => {
    const cookie = await httpLogin(h.url, 'alice', ADMIN_PASSWORD);
    const res = await trpcHttp(h.url, 'mutation', 'collectors.register', form({ port: 70000 }), { cookie });
    expect(res.status).toBe(400);
    expect(res.body.error.data).toMatchObject({ appCode: 'VALIDATION_FAILED', field: 'port' });
    expect(res.body.error.message).toMatch(/^port: /);
    expect(res.text).not.toContain(TARGET_PASSWORD);
  });

  it('updates partially: re-encrypts a new password, bumps config_version only for config fields, audits changed fields masked', async () => {
    const { collector } = await admin().collectors.register(form());
    const renamed = await admin().collectors.update({ id: collector.id, name: `${collector.name}-renamed`, tags: ['x'] });
    expect(renamed).toMatchObject({ name: `${collector.name}-renamed`, tags: ['x'], config_version: 1, host: collector.host });
    const [before] = await q('SELECT password_encrypted FROM collectors WHERE id = $1', [collector.id]);
    const changed = await admin().collectors.update({
      id: collector.id,
      password: 'new-password-1',
      collection_interval: 30,
      group_id: null,
    });
    expect(changed).toMatchObject({ config_version: 2, collection_interval: 30, group: null });
    const [after] = await q('SELECT password_encrypted FROM collectors WHERE id = $1', [collector.id]);
    expect(after.password_encrypted).not.toBe(before.password_encrypted);
    expect(h.service.deps.secretBox.decrypt(after.password_encrypted, collector.id)).toBe('new-password-1');
    expect(await redis.hget(h.service.deps.keys.configVersions, collector.id)).toBe('2');
    const audits = await q(
      "SELECT old_values, new_values, details FROM collector_audit_log WHERE action = 'collector.updated' AND collector_id = $1 ORDER BY id",
      [collector.id],
    );
    expect(audits[0].old_values).toEqual({ name: collector.name, tags: ['prod', 'aws', 'rds'] });
    expect(audits[0].new_values).toEqual({ name: `${collector.name}-renamed`, tags: ['x'] });
    expect(audits[1].old_values).toEqual({ collection_interval: 60, group_id: collector.group!.id, password: '***' });
    expect(audits[1].new_values).toEqual({ collection_interval: 30, group_id: null, password: '***' });
    expect(JSON.stringify(audits)).not.toContain('new-password-1');
    await expectRejected(admin().collectors.update({ id: collector.id, query_limit: 0 }), 'BAD_REQUEST', 'query_limit');
    await expectRejected(admin().collectors.update({ id: '00000000-0000-4000-8000-000000000000', name: 'x' }), 'NOT_FOUND');
  });

  it("update needs the password typed in to move the stored one to another server or weaker TLS (testConnection's rule)", async () => {
    const { collector } = await admin().collectors.register(form());
    const id = collector.id;
    const PEM = '-----BEGIN CERTIFICATE-----\nMIIBattacker\n-----END CERTIFICATE-----';
    for (const [patch, because] of [
      [{ port: 5433 }, /^password: is required when port changes \(5432 → 5433\)/],
      [{ host: 'evil.example', ssl_mode: 'disable' }, /^password: is required when host changes/],
      [{ type: 'mysql' }, /^password: is required when type changes/],
      [{ ssl_mode: 'prefer' }, /^password: is required when ssl_mode is weakened \(require → prefer\)/],
      [{ ssl_certificate: PEM }, /^password: is required when ssl_certificate changes/],
    ] as const) {
      const err: any = await admin()
        .collectors.update({ id, ...patch } as any)
        .catch((e: unknown) => e);
      expect(err?.code, JSON.stringify(patch)).toBe('BAD_REQUEST');
      expect(err.cause.details).toEqual({ field: 'password' });
      expect(err.message).toMatch(because);
    }
    // nothing was written: the row still points where its password was saved for
    const [row] = await q('SELECT host, port, ssl_mode, config_version FROM collectors WHERE id = $1', [id]);
    expect(row).toEqual({ host: collector.host, port: 5432, ssl_mode: 'require', config_version: 1 });

    // the same server (database, username), or stronger TLS: no password needed
    expect(
      await admin().collectors.update({ id, host: collector.host, port: 5432, database: 'other', username: 'reader' }),
    ).toMatchObject({ database: 'other', username: 'reader' });
    expect(await admin().collectors.update({ id, ssl_mode: 'verify-full' })).toMatchObject({ ssl_mode: 'verify-full' });
    // with the password typed in, the move is accepted and the new password stored
    expect(await admin().collectors.update({ id, port: 5433, password: 'typed-for-5433' })).toMatchObject({ port: 5433 });
    const [moved] = await q('SELECT password_encrypted FROM collectors WHERE id = $1', [id]);
    expect(h.service.deps.secretBox.decrypt(moved.password_encrypted, id)).toBe('typed-for-5433');
    expect(
      await admin().collectors.update({ id, ssl_certificate: PEM, ssl_mode: 'require', password: 'typed-again' }),
    ).toMatchObject({ has_ssl_certificate: true, ssl_mode: 'require' });
    await expectRejected(admin().collectors.update({ id, ssl_certificate: null }), 'BAD_REQUEST', 'password');

    // an enrolled collector's placeholder (empty password) has nothing to protect: the admin completes it
    const enrolled = randomUUID();
    await q(
      `INSERT INTO collectors (id, name, type, environment, host, port, database, username, password_encrypted, status)
       VALUES ($1, $2, 'postgresql', 'production', 'agent-host', 5432, 'postgres', 'postgres', $3, 'pending')`,
      [enrolled, `enrolled-${enrolled.slice(0, 8)}`, h.service.deps.secretBox.encrypt('', enrolled)],
    );
    expect(await admin().collectors.update({ id: enrolled, host: 'db.internal', port: 6432, ssl_mode: 'disable' })).toMatchObject(
      { host: 'db.internal', port: 6432, ssl_mode: 'disable' },
    );
  });

  it('soft-deletes (revokes tokens, denies at the edge within a second) and restores with a new token', async () => {
    const sub = new Redis(process.env.PGA_TEST_REDIS_URL!);
    const messages: any[] = [];
    await sub.subscribe(h.service.deps.keys.changesChannel);
    sub.on('message', (_c, m) => messages.push(JSON.parse(m)));
    try {
      const reg = await admin().collectors.register(form());
      const id = reg.collector.id;
      const { jti } = await h.service.deps.tokens.verify(reg.token);
      const del = await admin().collectors.delete({ id });
      expect(del.revoked_tokens).toBe(1);
      const deny = await readDenyState(redis, h.service.deps.keys);
      expect(deny.jtis.has(jti)).toBe(true);
      expect(deny.collectors.has(id)).toBe(true);
      await expect
        .poll(() => messages.find((m) => m.collector_id === id && m.kind === 'deleted'), { timeout: 1000 })
        .toMatchObject({ jtis: [jti] });
      await expectRejected(admin().collectors.get({ id }), 'NOT_FOUND');
      expect((await admin().collectors.list({ search: reg.collector.name })).total).toBe(0);
      expect((await admin().collectors.list({ search: reg.collector.name, deleted: 'deleted' })).items[0]).toMatchObject({ id });
      const [tok] = await q('SELECT revoked_at, revoked_reason FROM collector_tokens WHERE jti = $1', [jti]);
      expect(tok.revoked_reason).toBe('deleted');

      const restored = await admin().collectors.restore({ id });
      expect(restored.collector.deleted_at).toBeNull();
      expect((await h.service.deps.tokens.verify(restored.token)).sub).toBe(id);
      expect((await readDenyState(redis, h.service.deps.keys)).collectors.has(id)).toBe(false);
      const actions = (await q('SELECT action FROM collector_audit_log WHERE collector_id = $1 ORDER BY id', [id])).map(
        (r) => r.action,
      );
      expect(actions).toEqual(['collector.registered', 'collector.deleted', 'collector.restored']);
      await expectRejected(admin().collectors.restore({ id }), 'NOT_FOUND');
    } finally {
      sub.disconnect();
    }
  });

  it('rotates the token: the new one is shown once, the old jti is denied', async () => {
    const reg = await admin().collectors.register(form());
    const old = await h.service.deps.tokens.verify(reg.token);
    const rotated = await admin().collectors.rotateToken({ id: reg.collector.id });
    const fresh = await h.service.deps.tokens.verify(rotated.token);
    expect(fresh.jti).not.toBe(old.jti);
    expect(rotated.revoked_tokens).toBe(1);
    const deny = await readDenyState(redis, h.service.deps.keys);
    expect(deny.jtis.has(old.jti)).toBe(true);
    expect(deny.jtis.has(fresh.jti)).toBe(false);
    const rows = await q('SELECT jti, revoked_reason FROM collector_tokens WHERE collector_id = $1 ORDER BY issued_at', [
      reg.collector.id,
    ]);
    expect(rows).toEqual(
      expect.arrayContaining([
        { jti: old.jti, revoked_reason: 'rotated' },
        { jti: fresh.jti, revoked_reason: null },
      ]),
    );
    const got = await admin().collectors.get({ id: reg.collector.id });
    expect(got.token_rotated_at).not.toBeNull();
    expect(JSON.stringify(got)).not.toContain(rotated.token);
  });

  it('disables and enables: deny set, config_version, audit; idempotent', async () => {
    const { collector } = await admin().collectors.register(form());
    const disabled = await admin().collectors.disable({ id: collector.id });
    expect(disabled).toMatchObject({ enabled: false, config_version: 2 });
    expect((await readDenyState(redis, h.service.deps.keys)).collectors.has(collector.id)).toBe(true);
    expect(await redis.hget(h.service.deps.keys.configVersions, collector.id)).toBe('2');
    await admin().collectors.disable({ id: collector.id });
    const enabled = await admin().collectors.enable({ id: collector.id });
    expect(enabled).toMatchObject({ enabled: true, config_version: 3 });
    expect((await readDenyState(redis, h.service.deps.keys)).collectors.has(collector.id)).toBe(false);
    const actions = (await q('SELECT action FROM collector_audit_log WHERE collector_id = $1 ORDER BY id', [collector.id])).map(
      (r) => r.action,
    );
    expect(actions).toEqual(['collector.registered', 'collector.disabled', 'collector.enabled']);
  });

  it('sends commands through the Redis mailbox and records them', async () => {
    const { collector } = await admin().collectors.register(form());
    const cmd = await admin().collectors.sendCommand({ id: collector.id, action: 'restart' });
    expect(cmd).toMatchObject({ action: 'restart', delivered_at: null, requested_by: 'alice' });
    const mailbox = await redis.lrange(h.service.deps.keys.commands(collector.id), 0, -1);
    expect(mailbox.map((m) => JSON.parse(m))).toEqual([
      { id: cmd.id, action: 'restart', expires_at: new Date(cmd.expires_at).getTime() },
    ]);
    await q('UPDATE collector_commands SET delivered_at = now() WHERE id = $1', [cmd.id]);
    const got = await admin().collectors.get({ id: collector.id });
    expect(got.recent_commands[0]).toMatchObject({ id: cmd.id, action: 'restart' });
    expect(got.recent_commands[0]!.delivered_at).not.toBeNull();
    await expectRejected(admin().collectors.sendCommand({ id: collector.id, action: 'explode' as any }), 'BAD_REQUEST', 'action');
    const [audit] = await q("SELECT details FROM collector_audit_log WHERE action = 'collector.command' AND collector_id = $1", [
      collector.id,
    ]);
    expect(audit.details).toEqual({ command_id: cmd.id, action: 'restart' });
  });

  it('derives status: pending, active within 2 × interval, inactive after, error when reported; liveness and freshness apart', async () => {
    const mk = async () =>
      (await admin().collectors.register(form({ collection_interval: 60, tags: ['status-test'] }))).collector.id;
    const [pending, active, stale, failing, pushOnly, heartbeatOnly, heartbeatGone] = [
      await mk(),
      await mk(),
      await mk(),
      await mk(),
      await mk(),
      await mk(),
      await mk(),
    ];
    await q("UPDATE collectors SET last_heartbeat = now() - interval '30 seconds', last_metric_at = now() WHERE id = $1", [
      active,
    ]);
    await q(
      "UPDATE collectors SET last_heartbeat = now() - interval '121 seconds', last_metric_at = now() - interval '125 seconds', registered_at = now() - interval '1 hour' WHERE id = $1",
      [stale],
    );
    // Heartbeats alone do not make a collector active: pending until its first push (issue 3 §2).
    await q('UPDATE collectors SET last_heartbeat = now() WHERE id = $1', [heartbeatOnly]);
    // ... but one that heartbeated and went silent is inactive, as the writer's sweep marks it. (Both
    // registered an hour ago: the registration is a sign of life too, as for the sweep.)
    await q(
      "UPDATE collectors SET last_heartbeat = now() - interval '5 minutes', registered_at = now() - interval '1 hour' WHERE id = $1",
      [heartbeatGone],
    );
    await q(
      "UPDATE collectors SET last_heartbeat = now(), status = 'error', last_error = 'permission denied for pg_stat_statements' WHERE id = $1",
      [failing],
    );
    await q('UPDATE collectors SET last_metric_at = now() WHERE id = $1', [pushOnly]);
    const get = (id: string) => admin().collectors.get({ id });
    // Never heard from: no uptime to measure ("n/a"), not 0 % as if it had been down since registration.
    expect(await get(pending)).toMatchObject({
      status: 'pending',
      heartbeat_alive: false,
      data_fresh: false,
      uptime_percentage: null,
    });
    expect(await get(active)).toMatchObject({ status: 'active', heartbeat_alive: true, data_fresh: true });
    expect((await get(heartbeatOnly)).uptime_percentage).toBe(0); // heard from: the sweep's figure
    expect(await get(stale)).toMatchObject({ status: 'inactive', heartbeat_alive: false });
    expect(await get(failing)).toMatchObject({
      status: 'error',
      heartbeat_alive: true,
      data_fresh: false,
      last_error: 'permission denied for pg_stat_statements',
    });
    expect(await get(pushOnly)).toMatchObject({ status: 'active', heartbeat_alive: false, data_fresh: true });
    expect(await get(heartbeatOnly)).toMatchObject({ status: 'pending', heartbeat_alive: true, data_fresh: false });
    expect(await get(heartbeatGone)).toMatchObject({ status: 'inactive', heartbeat_alive: false, data_fresh: false });
    const byStatus = async (status: any) =>
      (await admin().collectors.list({ tag: 'status-test', status })).items.map((c) => c.id).sort();
    expect(await byStatus('active')).toEqual([active, pushOnly].sort());
    expect(await byStatus('inactive')).toEqual([stale, heartbeatGone].sort());
    expect(await byStatus('error')).toEqual([failing]);
    expect(await byStatus('pending')).toEqual([pending, heartbeatOnly].sort());
    // Sorted by the displayed status (computed, not the stored column), paged.
    const byStatusSort = async (order: 'asc' | 'desc', page: number) =>
      admin().collectors.list({ tag: 'status-test', sort: 'status', order, page, page_size: 3 });
    const ascPage2 = await byStatusSort('asc', 2);
    expect(ascPage2.total).toBe(7);
    expect(ascPage2.items.map((c) => c.status)).toEqual(['inactive', 'inactive', 'pending']);
    expect((await byStatusSort('asc', 1)).items.map((c) => c.status)).toEqual(['active', 'active', 'error']);
    expect((await byStatusSort('desc', 1)).items.map((c) => c.status)).toEqual(['pending', 'pending', 'inactive']);
    // The same through a free-text search (its matching rows are found once, then paged and counted).
    const searchedPage2 = await admin().collectors.list({
      tag: 'status-test',
      search: 'RDS.AMAZONAWS',
      sort: 'status',
      order: 'asc',
      page: 2,
      page_size: 3,
    });
    expect(searchedPage2.total).toBe(7);
    expect(searchedPage2.items.map((c) => c.status)).toEqual(['inactive', 'inactive', 'pending']);
  });

  it('lists with filters, free text, sort and pagination with a total', async () => {
    const tag = `batch-${Date.now()}`;
    const names = ['alpha-db', 'beta-db', 'gamma-db', 'delta-db', 'epsilon-db'].map((n) => `${tag}-${n}`);
    for (const [i, name] of names.entries())
      await admin().collectors.register(
        form({
          name,
          tags: [tag, i % 2 ? 'odd' : 'even'],
          environment: i < 2 ? 'staging' : 'production',
          type: i === 4 ? 'mysql' : 'postgresql',
          host: `host-${i}.example.com`,
          group: i === 0 ? 'On-Premises' : 'AWS RDS',
        }),
      );
    const l = (input: any) => admin().collectors.list({ tag, ...input });
    expect((await l({})).total).toBe(5);
    expect((await l({ environment: 'staging' })).items.map((c) => c.name)).toEqual([names[0], names[1]]);
    expect((await l({ type: 'mysql' })).items.map((c) => c.name)).toEqual([names[4]]);
    const onPrem = (await h.service.deps.pool.query("SELECT id FROM collector_groups WHERE name = 'On-Premises'")).rows[0].id;
    expect((await l({ group_id: onPrem })).items.map((c) => c.name)).toEqual([names[0]]);
    // A page's rows carry their group (read after the page is chosen).
    expect((await l({ sort: 'name', page_size: 1 })).items[0]!.group).toMatchObject({ id: onPrem, name: 'On-Premises' });
    expect((await admin().collectors.list({ tag: 'odd', search: tag })).total).toBe(2);
    expect((await l({ search: 'HOST-3.EXAMPLE' })).items.map((c) => c.name)).toEqual([names[3]]);
    expect((await l({ search: '%' })).total).toBe(0);
    const page2 = await l({ sort: 'name', order: 'desc', page: 2, page_size: 2 });
    expect(page2).toMatchObject({ total: 5, page: 2, page_size: 2 });
    // descending: gamma, epsilon | delta, beta | alpha
    expect(page2.items.map((c) => c.name)).toEqual([names[3], names[1]]);
    expect((await l({ page: 9, page_size: 2 })).total).toBe(5);
    // With a free-text search: the same order, pages and total (past the last page too).
    const searched = await l({ search: '-DB', sort: 'name', order: 'desc', page: 2, page_size: 2 });
    expect(searched).toMatchObject({ total: 5, page: 2, page_size: 2 });
    expect(searched.items.map((c) => c.name)).toEqual([names[3], names[1]]);
    expect(await l({ search: '-db', page: 9, page_size: 2 })).toMatchObject({ total: 5, items: [] });
    expect((await l({ search: 'example.com', sort: 'registered_at', order: 'asc' })).items.map((c) => c.name)).toEqual(names);
    expect(
      (await l({ search: 'example.com', sort: 'registered_at', order: 'desc', page_size: 4 })).items.map((c) => c.name),
    ).toEqual([...names].reverse().slice(0, 4));
    expect(await l({ search: 'no-such-collector', page: 1 })).toMatchObject({ total: 0, items: [] });
  });

  it('viewers read but cannot change collectors; anonymous callers cannot read', async () => {
    const { collector } = await admin().collectors.register(form());
    const viewer = h.caller(h.viewer);
    await expect(viewer.collectors.get({ id: collector.id })).resolves.toMatchObject({ id: collector.id });
    await expect(viewer.collectors.list({})).resolves.toBeTruthy();
    for (const call of [
      () => viewer.collectors.register(form()),
      () => viewer.collectors.update({ id: collector.id, name: 'x' }),
      () => viewer.collectors.delete({ id: collector.id }),
      () => viewer.collectors.restore({ id: collector.id }),
      () => viewer.collectors.rotateToken({ id: collector.id }),
      () => viewer.collectors.disable({ id: collector.id }),
      () => viewer.collectors.enable({ id: collector.id }),
      () => viewer.collectors.sendCommand({ id: collector.id, action: 'stop' }),
      () => viewer.collectors.testConnection({ collector_id: collector.id }),
    ])
      await expectRejected(call(), 'FORBIDDEN');
    await expectRejected(h.caller(null).collectors.list({}), 'UNAUTHORIZED');
    await expectRejected(h.caller(null).collectors.get({ id: collector.id }), 'UNAUTHORIZED');
  });

  it('detects a tampered or transplanted ciphertext instead of using it', async () => {
    const a = (await admin().collectors.register(form({ host: '127.0.0.1' }))).collector.id;
    const b = (await admin().collectors.register(form({ host: '127.0.0.1' }))).collector.id;
    const [row] = await q('SELECT password_encrypted FROM collectors WHERE id = $1', [a]);
    // transplant a's ciphertext onto b: the associated data (b's id) no longer matches
    await q('UPDATE collectors SET password_encrypted = $2 WHERE id = $1', [b, row.password_encrypted]);
    await expectRejected(admin().collectors.testConnection({ collector_id: b }), 'INTERNAL_SERVER_ERROR');
    // flip one byte of the ciphertext body
    const body = row.password_encrypted.split('.')[2] as string;
    const raw = Buffer.from(body, 'base64url');
    raw[14]! ^= 0x01;
    await q('UPDATE collectors SET password_encrypted = $2 WHERE id = $1', [a, `v1.k1.${raw.toString('base64url')}`]);
    await expectRejected(admin().collectors.testConnection({ collector_id: a }), 'INTERNAL_SERVER_ERROR');
  });
});
