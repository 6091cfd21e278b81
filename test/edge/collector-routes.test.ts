import { randomUUID } from 'node:crypto';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256Hex } from '@pga/crypto';
import { publishCollectorChange } from '@pga/redis-keys';
import { hashToken } from '@pga/tokens';
import { freePort } from '@pga/local-stack';
import { enrollCollector, InvalidEnrollmentSecret } from '../../services/ingest-edge/src/routes/enroll';
import { call, EdgeWorld, rawRequest, waitUntil, type TestCollector } from './harness';

describe('heartbeat, config, enrollment and refresh-token endpoints', () => {
  let world: EdgeWorld;
  let url: string;
  let port: number;
  let c: TestCollector;

  beforeAll(async () => {
    world = await EdgeWorld.create();
    const edge = await world.startEdge({ CENTRAL_API_URL: 'https://central.example:8443' });
    url = edge.url;
    port = edge.port;
    c = await world.collector();
  });
  afterAll(async () => world?.[Symbol.asyncDispose]());

  const heartbeat = (body: string, token = c.token, id = c.id) =>
    call(`${url}/api/v1/collectors/${id}/heartbeat`, { token, body });
  /**
   * The commands are still queued in their order and not recorded as delivered, and the next
   * heartbeat that can be answered delivers them.
   */
  const expectCommandsKept = async (who: TestCollector, queued: string[]) => {
    expect(await world.redis.lrange(world.keys.commands(who.id), 0, -1)).toEqual(queued);
    const commands = queued.map((q) => JSON.parse(q) as { id: string; action: string });
    for (const { id } of commands) expect(await world.redis.hexists(world.keys.deliveredCommands, id)).toBe(0);
    expect((await heartbeat('{}', who.token, who.id)).json.commands).toEqual(commands);
  };

  it('heartbeat: Redis only, config_version from PostgreSQL once, then from Redis', async () => {
    const res = await heartbeat(
      JSON.stringify({ status: 'error', metrics_count: 5, last_error: 'boom', collection_time_ms: 12.5, version: '3.0.0' }),
    );
    expect(res.status).toBe(200);
    expect(res.json).toEqual({ status: 'ok', config_version: 3, commands: [] });
    const hb = await world.redis.hgetall(world.keys.heartbeat(c.id));
    expect(hb).toMatchObject({
      status: 'error',
      metrics_count: '5',
      last_error: 'boom',
      collection_time_ms: '12.5',
      version: '3.0.0',
    });
    expect(Date.parse(hb.last_seen!)).toBeGreaterThan(Date.now() - 60_000);
    expect(await world.redis.sismember(world.keys.heartbeatDirty, c.id)).toBe(1);
    expect(await world.redis.hget(world.keys.configVersions, c.id)).toBe('3');
    // The collection time is also kept as one report scored by the heartbeat's time (its last_seen),
    // which the next heartbeat (replacing the hash) does not lose; one without a time adds none.
    const times = world.keys.heartbeatCollectionTimes(c.id);
    const reports = async () => {
      const r = await world.redis.zrange(times, 0, -1, 'WITHSCORES');
      return Array.from({ length: r.length / 2 }, (_, i) => [r[2 * i]!, Number(r[2 * i + 1])] as const);
    };
    expect(hb.collection_times).toBe('reports');
    const first = Date.parse(hb.last_seen!);
    expect(await reports()).toEqual([[`${first}:13`, first]]);
    expect((await heartbeat(JSON.stringify({ collection_time_ms: 7 }))).status).toBe(200);
    const second = Date.parse((await world.redis.hget(world.keys.heartbeat(c.id), 'last_seen'))!);
    expect((await heartbeat('{}')).status).toBe(200);
    expect(await reports()).toEqual([
      [`${first}:13`, first],
      [`${second}:7`, second],
    ]);
    expect(await world.redis.pttl(times)).toBeGreaterThan(7 * 24 * 3600 * 1000);
    // Plain ZADD, no running figures under the earlier key (ZADD GT there needed Redis 6.2).
    expect(await world.redis.exists(`${world.keys.heartbeatDirty.slice(0, -'hb:dirty'.length)}hb:ct:${c.id}`)).toBe(0);
    // Nothing written to PostgreSQL by the edge: the writer flushes heartbeats.
    const { rows } = await world.pool.query('SELECT last_heartbeat FROM collectors WHERE id = $1', [c.id]);
    expect(rows[0].last_heartbeat).toBeNull();
  });

  it('heartbeat: records its minute and status for the heartbeat history, kept until the writer flushes it', async () => {
    const who = await world.collector();
    const before = Math.floor(Date.now() / 60_000) * 60_000;
    expect((await heartbeat(JSON.stringify({ status: 'error', last_error: 'x' }), who.token, who.id)).status).toBe(200);
    expect((await heartbeat('{}', who.token, who.id)).status).toBe(200);
    const after = Math.floor(Date.now() / 60_000) * 60_000;
    // A ZSET scored by the minute: `<minute>:<status>` members.
    const scored = await world.redis.zrange(world.keys.heartbeatMinutes(who.id), 0, -1, 'WITHSCORES');
    const members = scored.filter((_, i) => i % 2 === 0);
    const allowed = new Set([before, after].flatMap((m) => [`${m}:error`, `${m}:active`]));
    expect(members.length).toBeGreaterThanOrEqual(2);
    for (const m of members) expect(allowed.has(m)).toBe(true);
    for (let i = 0; i < scored.length; i += 2) expect(`${scored[i + 1]}:`).toBe(scored[i]!.replace(/(active|error)$/, ''));
    expect(members.some((m) => m.endsWith(':error'))).toBe(true);
    expect(await world.redis.pttl(world.keys.heartbeatMinutes(who.id))).toBeGreaterThan(24 * 3600 * 1000);
  });

  it('heartbeat: the minutes buffer keeps the newest 1,440 entries (a writer away for days cannot grow it)', async () => {
    const who = await world.collector();
    const key = world.keys.heartbeatMinutes(who.id);
    // Two days of minutes no writer flushed (as an edge of this release leaves them).
    const now = Math.floor(Date.now() / 60_000) * 60_000;
    const old = Array.from({ length: 2880 }, (_, i) => now - (2880 - i) * 60_000);
    await world.redis.zadd(key, ...old.flatMap((t) => [t, `${t}:active`]));
    expect((await heartbeat('{}', who.token, who.id)).status).toBe(200);
    expect(await world.redis.zcard(key)).toBe(1440);
    const kept = await world.redis.zrange(key, 0, -1);
    // The oldest 1,441 went, the newest 1,439 stay with the heartbeat's own minute last.
    expect(kept[0]).toBe(`${old[1441]}:active`);
    expect(kept.at(-2)).toBe(`${old.at(-1)}:active`);
    expect(kept.at(-1)).toMatch(/^\d+:active$/);
    expect(Number(kept.at(-1)!.split(':')[0])).toBeGreaterThanOrEqual(now);
    expect(await world.redis.pttl(key)).toBeGreaterThan(24 * 3600 * 1000);
  });

  it('heartbeat: the collection-time reports keep the newest 200 (a writer away cannot grow them)', async () => {
    const who = await world.collector();
    const key = world.keys.heartbeatCollectionTimes(who.id);
    const now = Date.now();
    const old = Array.from({ length: 300 }, (_, i) => now - (300 - i) * 60_000);
    await world.redis.zadd(key, ...old.flatMap((t) => [t, `${t}:50`]));
    expect((await heartbeat(JSON.stringify({ collection_time_ms: 70 }), who.token, who.id)).status).toBe(200);
    const kept = await world.redis.zrange(key, 0, -1);
    expect(kept).toHaveLength(200);
    expect(kept[0]).toBe(`${old[101]}:50`);
    expect(kept.at(-1)).toMatch(/^\d+:70$/);
  });

  it('heartbeat: answers the admin’s config bump and drains pending commands once', async () => {
    await world.redis.hset(world.keys.configVersions, c.id, '7');
    await world.redis.rpush(
      world.keys.commands(c.id),
      JSON.stringify({ id: 'cmd-1', action: 'restart' }),
      JSON.stringify({ id: 'cmd-2', action: 'stop' }),
    );
    const first = await heartbeat('');
    expect(first.json).toEqual({
      status: 'ok',
      config_version: 7,
      commands: [
        { id: 'cmd-1', action: 'restart' },
        { id: 'cmd-2', action: 'stop' },
      ],
    });
    expect(Object.keys(await world.redis.hgetall(world.keys.deliveredCommands)).sort()).toEqual(['cmd-1', 'cmd-2']);
    expect((await heartbeat('{}')).json.commands).toEqual([]);
    // The latest heartbeat replaces the hash: nothing of the first one's report is left to re-apply.
    const hb = await world.redis.hgetall(world.keys.heartbeat(c.id));
    expect(hb.status).toBe('active');
    expect([hb.collection_time_ms, hb.metrics_count, hb.last_error, hb.version]).toEqual([
      undefined,
      undefined,
      undefined,
      undefined,
    ]);
  });

  it('heartbeat: 400 for a bad body, 401 without a token', async () => {
    const bad = await heartbeat('{"status":"sleeping"}');
    expect([bad.status, bad.json.error.code]).toEqual([400, 'VALIDATION_FAILED']);
    const notJson = await heartbeat('{');
    expect([notJson.status, notJson.json.error.code]).toEqual([400, 'INVALID_JSON']);
    // Counts and durations past PostgreSQL's integer: refused naming the field (they were answered
    // 200, then left out of the collector's row by the writer).
    for (const [field, body] of [
      ['metrics_count', '{"metrics_count":2147483648}'],
      ['collection_time_ms', '{"collection_time_ms":1e308}'],
    ] as const) {
      const res = await heartbeat(body);
      expect([res.status, res.json.error.code]).toEqual([400, 'VALIDATION_FAILED']);
      expect(res.json.error.message).toContain(field);
    }
    expect((await heartbeat('{"metrics_count":2147483647,"collection_time_ms":2147483647}')).status).toBe(200);
    const anon = await call(`${url}/api/v1/collectors/${c.id}/heartbeat`, { body: '{}' });
    expect(anon.status).toBe(401);
  });

  it('heartbeat: U+0000 in a text field is a 400 naming the field, and nothing reaches Redis', async () => {
    // PostgreSQL text cannot store it, and the writer flushes heartbeats many collectors per statement.
    const other = await world.collector();
    for (const [field, body] of [
      ['last_error', { status: 'error', last_error: 'disk\u0000full' }],
      ['version', { version: '3.0\u0000' }],
      ['version', { version: '3.0\udfff' }],
    ] as const) {
      const res = await heartbeat(JSON.stringify(body), other.token, other.id);
      expect([res.status, res.json.error.code]).toEqual([400, 'VALIDATION_FAILED']);
      expect(JSON.stringify(res.json.error)).toContain(field);
      expect(JSON.stringify(res.json.error)).toMatch(/U\+0000|unpaired UTF-16 surrogate/);
    }
    expect(await world.redis.exists(world.keys.heartbeat(other.id))).toBe(0);
    // Other control characters in an error text (a stack trace's newlines and tabs) are fine.
    expect((await heartbeat(JSON.stringify({ status: 'error', last_error: 'a\n\tb' }), other.token, other.id)).status).toBe(200);
  });

  it('heartbeat: a long error text is kept to its first 4,000 characters and a null version counts as absent, not a 400', async () => {
    const other = await world.collector();
    const trace = `Error: connection refused\n${'    at frame (file.js:1:1)\n'.repeat(400)}`;
    expect(trace.length).toBeGreaterThan(4000);
    const res = await heartbeat(JSON.stringify({ status: 'error', last_error: trace, version: null }), other.token, other.id);
    expect(res.status).toBe(200);
    const hb = await world.redis.hgetall(world.keys.heartbeat(other.id));
    // Stored as one line: its line breaks are spaces (authzrev F6; a newline forged lines of an export).
    expect(hb.last_error).toBe(trace.slice(0, 4000).replace(/\n/g, ' '));
    expect(hb.version).toBeUndefined();
    // A lone surrogate in the free text does not refuse the heartbeat: it is kept as U+FFFD.
    expect(
      (await heartbeat(JSON.stringify({ status: 'error', last_error: 'disk \ud800full' }), other.token, other.id)).status,
    ).toBe(200);
    expect(await world.redis.hget(world.keys.heartbeat(other.id), 'last_error')).toBe('disk \ufffdfull');
    // Not cut between the two halves of a pair (the lone half would be stored as U+FFFD).
    const emoji = `${'x'.repeat(3999)}\u{1F600} and more`;
    expect((await heartbeat(JSON.stringify({ status: 'error', last_error: emoji }), other.token, other.id)).status).toBe(200);
    expect(await world.redis.hget(world.keys.heartbeat(other.id), 'last_error')).toBe('x'.repeat(3999));
  });

  it('heartbeat: pending commands stay queued when the answer fails (PostgreSQL unreachable for the config version)', async () => {
    // An edge whose PostgreSQL is gone, and a collector whose config version is not in Redis yet (as
    // after an enrollment at the edge): the heartbeat needs PostgreSQL and cannot be answered.
    const dead = await world.startEdge({ DATABASE_URL: `postgres://nobody:x@127.0.0.1:${await freePort()}/nothing` });
    const lonely = await world.collector();
    await world.redis.hdel(world.keys.configVersions, lonely.id);
    const queued = [JSON.stringify({ id: 'cmd-a', action: 'restart' }), JSON.stringify({ id: 'cmd-b', action: 'stop' })];
    await world.redis.rpush(world.keys.commands(lonely.id), ...queued);
    const failed = await call(`${dead.url}/api/v1/collectors/${lonely.id}/heartbeat`, { token: lonely.token, body: '{}' });
    // The database is away, not the edge broken: 503 + Retry-After, which the collector retries.
    expect([failed.status, failed.json?.error?.code, failed.headers.get('retry-after')]).toEqual([
      503,
      'UNAVAILABLE',
      expect.stringMatching(/^([5-9]|10)$/),
    ]);
    await expectCommandsKept(lonely, queued);
  });

  it('heartbeat: pending commands stay queued when one command of its MULTI fails (503)', async () => {
    const other = await world.collector();
    const command = JSON.stringify({ id: 'cmd-w', action: 'restart' });
    await world.redis.rpush(world.keys.commands(other.id), command);
    // The dirty set is not a set: SADD fails with WRONGTYPE, the rest of the MULTI runs (the drain too).
    await world.redis.set(world.keys.heartbeatDirty, 'not a set');
    try {
      const failed = await heartbeat('{}', other.token, other.id);
      expect([failed.status, failed.json.error.code]).toEqual([503, 'UNAVAILABLE']);
    } finally {
      await world.redis.del(world.keys.heartbeatDirty);
    }
    await expectCommandsKept(other, [command]);
  });

  it('heartbeat: pending commands stay queued when the collector hangs up before the answer', async () => {
    // The config version must come from PostgreSQL (not in Redis yet), and PostgreSQL is held up
    // by a lock: the commands are drained, then the collector goes away before the answer.
    const impatient = await world.collector();
    await world.redis.hdel(world.keys.configVersions, impatient.id);
    const queued = [JSON.stringify({ id: 'cmd-x', action: 'restart' }), JSON.stringify({ id: 'cmd-y', action: 'stop' })];
    await world.redis.rpush(world.keys.commands(impatient.id), ...queued);
    const locker = await world.pool.connect();
    try {
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE collectors IN ACCESS EXCLUSIVE MODE');
      const socket = connect(port, '127.0.0.1');
      await new Promise<void>((resolve) => socket.once('connect', resolve));
      socket.write(
        `POST /api/v1/collectors/${impatient.id}/heartbeat HTTP/1.1\r\nHost: x\r\n` +
          `Authorization: Bearer ${impatient.token}\r\nX-Collector-ID: ${impatient.id}\r\n` +
          'Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}',
      );
      await waitUntil(async () => (await world.redis.llen(world.keys.commands(impatient.id))) === 0, 5000, 'commands drained');
      socket.destroy();
      await new Promise((r) => setTimeout(r, 100));
      await locker.query('COMMIT');
    } finally {
      locker.release();
    }
    await waitUntil(
      async () => (await world.redis.llen(world.keys.commands(impatient.id))) === 2,
      5000,
      'commands put back after the hang-up',
    );
    await expectCommandsKept(impatient, queued);
  });

  it('config (JSON): the decrypted target, only to its collector', async () => {
    const res = await call(`${url}/api/v1/collectors/${c.id}/config`, { token: c.token, method: 'GET' });
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(res.json).toEqual({
      config_version: 3,
      enabled: true,
      collection_interval: 60,
      query_limit: 100,
      target: {
        type: 'postgresql',
        host: 'db.internal',
        port: 5433,
        database: 'app',
        username: 'monitor',
        password: 's3cret "pw"',
        ssl_mode: 'require',
      },
    });
  });

  /**
   * Security review M4: the edge's deny state is fed by Redis; a forged "enabled" change on it (a
   * local user on a Redis without a password) made a disabled collector's config answer 200 with its
   * plaintext password. PostgreSQL's row decides: 403, and the password is not even read.
   */
  it('config: a disabled collector is refused from PostgreSQL’s row even when the edge’s deny state says enabled', async () => {
    const off = await world.collector();
    await world.pool.query('UPDATE collectors SET enabled = false WHERE id = $1', [off.id]);
    await publishCollectorChange(world.redis, world.keys, { collector_id: off.id, kind: 'disabled', denyCollector: true });
    const json = () => call(`${url}/api/v1/collectors/${off.id}/config`, { token: off.token, method: 'GET' });
    await waitUntil(async () => (await json()).status === 403, 5000, 'the edge to hear of the disable');
    // The forged change: what the admin publishes when it enables the collector again.
    await publishCollectorChange(world.redis, world.keys, { collector_id: off.id, kind: 'enabled', allowCollector: true });
    const pushed = () => call(`${url}/api/v1/metrics/push`, { token: off.token, body: '{"forged":true}' });
    await waitUntil(async () => (await pushed()).status === 200, 5000, 'the edge to take the forged change');
    for (const res of [await json(), await call(`${url}/api/v1/config/${off.id}`, { token: off.token, method: 'GET' })]) {
      expect([res.status, res.json?.error?.code]).toEqual([403, 'COLLECTOR_DISABLED']);
      expect(res.text).not.toContain('s3cret');
    }
  });

  it('config (v3 TOML): text/plain, 404 when there is nothing to send', async () => {
    const res = await call(`${url}/api/v1/config/${c.id}`, { token: c.token, method: 'GET', headers: { accept: 'text/plain' } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(res.text).toContain(
      '[postgres]\nhost = "db.internal"\nport = 5433\nuser = "monitor"\npassword = "s3cret \\"pw\\""\ndatabase = "app"\nsslmode = "require"',
    );
    expect(res.text).toContain(`[collector]\nid = "${c.id}"`);
    expect(res.text).toContain('[backend]\nurl = "https://central.example:8443"');
    const mysql = await world.collector();
    await world.pool.query(`UPDATE collectors SET type = 'mysql' WHERE id = $1`, [mysql.id]);
    const none = await call(`${url}/api/v1/config/${mysql.id}`, { token: mysql.token, method: 'GET' });
    expect(none.status).toBe(404);
  });

  it('enrollment: a valid secret creates a pending collector with a working token, once', async () => {
    const secret = `enroll-${randomUUID()}`;
    const group = await world.pool.query(`SELECT id FROM collector_groups WHERE name = 'AWS RDS'`);
    await world.pool.query(
      `INSERT INTO enrollment_secrets (name, secret_hash, group_id, environment, max_uses) VALUES ('fleet', $1, $2, 'staging', 1)`,
      [sha256Hex(secret), group.rows[0].id],
    );
    const register = (body: unknown, s: string | null = secret) =>
      call(`${url}/api/v1/collectors/register`, {
        body: JSON.stringify(body),
        headers: s === null ? {} : { 'x-registration-secret': s },
      });

    expect((await register({ name: 'x', hostname: 'h' }, null)).status).toBe(401);
    // CONTRACT.md: 401 for a missing secret, whatever the body (it was a 400 for the body first).
    const noSecret = await register({}, null);
    expect([noSecret.status, noSecret.json.error.code]).toEqual([401, 'UNAUTHORIZED']);
    const wrong = await register({ name: 'x', hostname: 'h' }, 'wrong');
    // RFC 9110 §11.6.1: a 401 names how to authenticate: here the enrollment secret's header.
    expect([wrong.status, wrong.headers.get('www-authenticate')]).toEqual([401, 'X-Registration-Secret realm="pganalytics"']);
    expect(noSecret.headers.get('www-authenticate')).toBe('X-Registration-Secret realm="pganalytics"');
    const bad = await register({ hostname: 'h' });
    expect([bad.status, bad.json.error.code]).toEqual([400, 'VALIDATION_FAILED']);
    // Control characters (U+0000 cannot even be stored) are a 400 naming the field, not a 500.
    for (const body of [
      { name: 'pg\u0000prod', hostname: 'h' },
      { name: 'pg\nprod', hostname: 'h' },
      { name: 'pg-prod', hostname: 'h\u0000' },
      { name: 'pg-prod', hostname: 'h', version: '3\u0000' },
      // Not Unicode: the audit entry's jsonb refused it, a 500 (2026-12-06).
      { name: 'pg-prod', hostname: 'h\ud800' },
      { name: '\udc00pg-prod', hostname: 'h' },
      { name: 'pg-prod', hostname: 'h', version: '3\ud800' },
    ]) {
      const refused = await register(body);
      expect([refused.status, refused.json.error.code], JSON.stringify(body)).toEqual([400, 'VALIDATION_FAILED']);
    }

    const res = await register({ name: 'pg-prod-7', hostname: 'pg-prod-7.internal', version: '3.0.0' });
    expect(res.status).toBe(200);
    expect(res.json).toEqual({
      collector_id: expect.any(String),
      token: expect.any(String),
      expires_at: expect.any(String),
      certificate: '',
      private_key: '',
    });
    const id = res.json.collector_id as string;
    const row = (await world.pool.query('SELECT * FROM collectors WHERE id = $1', [id])).rows[0];
    expect(row).toMatchObject({
      name: 'pg-prod-7',
      status: 'pending',
      environment: 'staging',
      group_id: group.rows[0].id,
      agent_hostname: 'pg-prod-7.internal',
      agent_version: '3.0.0',
    });
    const tokens = (await world.pool.query('SELECT token_hash FROM collector_tokens WHERE collector_id = $1', [id])).rows;
    expect(tokens.map((t) => t.token_hash)).toEqual([hashToken(res.json.token)]);
    const audit = (
      await world.pool.query('SELECT action, details, actor_name FROM collector_audit_log WHERE collector_id = $1', [id])
    ).rows;
    // The admin's vocabulary (`audit.list {action: "collector."}` finds it), told apart by `via`.
    expect(audit).toMatchObject([{ action: 'collector.registered', details: { via: 'enrollment' }, actor_name: 'enrollment' }]);

    const pushed = await call(`${url}/api/v1/metrics/push`, { token: res.json.token, body: '{"first":true}' });
    expect(pushed.status).toBe(200);
    // Its target is a placeholder without an SSL mode: the config says libpq's default, never null
    // (CONTRACT.md's ssl_mode is a string), and so does the v3 TOML.
    const config = await call(`${url}/api/v1/collectors/${id}/config`, { token: res.json.token, method: 'GET' });
    expect([config.status, config.json.target.ssl_mode]).toEqual([200, 'prefer']);
    const toml = await call(`${url}/api/v1/config/${id}`, { token: res.json.token, method: 'GET' });
    expect(toml.text).toContain('sslmode = "prefer"');
    // max_uses 1: used up.
    expect((await register({ name: 'pg-prod-8', hostname: 'h8' })).status).toBe(401);
  });

  /**
   * The admin service's repair refuses an id Redis knows and PostgreSQL lacks (PostgreSQL restored
   * from a backup older than the enrollment): the edge records each enrolled id, after the commit.
   * Enrollment needs only PostgreSQL: a Redis that refuses the write fails nothing (the admin's
   * repair adds the id from PostgreSQL).
   */
  it('enrollment: the new id joins Redis’s known set; a write Redis refuses does not fail the enrollment', async () => {
    const secret = `known-${randomUUID()}`;
    await world.pool.query(`INSERT INTO enrollment_secrets (name, secret_hash, max_uses) VALUES ('known', $1, 5)`, [
      sha256Hex(secret),
    ]);
    const enroll = (name: string) =>
      call(`${url}/api/v1/collectors/register`, {
        body: JSON.stringify({ name: `${name}-${randomUUID().slice(0, 6)}`, hostname: 'h' }),
        headers: { 'x-registration-secret': secret },
      });
    const first = await enroll('known');
    expect(first.status).toBe(200);
    expect(await world.redis.sismember(world.keys.knownCollectors, first.json.collector_id)).toBe(1);

    // A key of the wrong type: Redis answers the SADD with an error (as it would out of memory).
    await world.redis.del(world.keys.knownCollectors);
    await world.redis.set(world.keys.knownCollectors, 'not a set');
    try {
      const second = await enroll('unrecorded');
      expect(second.status).toBe(200);
      const { rows } = await world.pool.query('SELECT 1 FROM collectors WHERE id = $1', [second.json.collector_id]);
      expect(rows).toHaveLength(1);
      expect((await call(`${url}/api/v1/metrics/push`, { token: second.json.token, body: '{"n":1}' })).status).toBe(200);
    } finally {
      await world.redis.del(world.keys.knownCollectors);
    }
  });

  it('enrollment: a taken name is a 409 and does not use up the secret', async () => {
    const secret = `dup-${randomUUID()}`;
    await world.pool.query(`INSERT INTO enrollment_secrets (name, secret_hash, max_uses) VALUES ('dup', $1, 5)`, [
      sha256Hex(secret),
    ]);
    const body = JSON.stringify({ name: `same-${randomUUID().slice(0, 6)}`, hostname: 'h' });
    const first = await call(`${url}/api/v1/collectors/register`, { body, headers: { 'x-registration-secret': secret } });
    const again = await call(`${url}/api/v1/collectors/register`, { body, headers: { 'x-registration-secret': secret } });
    expect(first.status).toBe(200);
    expect([again.status, again.json.error.code]).toEqual([409, 'CONFLICT']);
    const { rows } = await world.pool.query('SELECT uses FROM enrollment_secrets WHERE secret_hash = $1', [sha256Hex(secret)]);
    expect(rows[0].uses).toBe(1);
  });

  it('enrollment: "version": null is a version not reported, as in a heartbeat (it was a 400)', async () => {
    const secret = `null-${randomUUID()}`;
    await world.pool.query(`INSERT INTO enrollment_secrets (name, secret_hash) VALUES ('nullv', $1)`, [sha256Hex(secret)]);
    const name = `nullv-${randomUUID().slice(0, 6)}`;
    const res = await call(`${url}/api/v1/collectors/register`, {
      body: JSON.stringify({ name, hostname: 'h', version: null }),
      headers: { 'x-registration-secret': secret },
    });
    expect(res.status).toBe(200);
    const { rows } = await world.pool.query('SELECT agent_version FROM collectors WHERE id = $1', [res.json.collector_id]);
    expect(rows).toEqual([{ agent_version: null }]);
  });

  it('enrollment: an expired secret is refused', async () => {
    const secret = `old-${randomUUID()}`;
    await world.pool.query(
      `INSERT INTO enrollment_secrets (name, secret_hash, expires_at) VALUES ('old', $1, now() - interval '1 minute')`,
      [sha256Hex(secret)],
    );
    const res = await call(`${url}/api/v1/collectors/register`, {
      body: '{"name":"late","hostname":"h"}',
      headers: { 'x-registration-secret': secret },
    });
    expect([res.status, res.json.error.code]).toEqual([401, 'UNAUTHORIZED']);
  });

  /**
   * Security review L4: a wrong secret cost a JWT signature (the token was signed before the secret
   * was checked) and a transaction, without limit. The token is now signed only for a good secret,
   * and an address past 10 failed enrollments gets 429 + Retry-After unless its secret is live (an
   * edge of its own here: the limiter is per process, and the other tests enroll from this address
   * too).
   */
  it('enrollment: no token is signed for a wrong secret', async () => {
    let signed = 0;
    const tokens = {
      ...world.tokens,
      issue: (...args: Parameters<typeof world.tokens.issue>) => (signed++, world.tokens.issue(...args)),
    };
    const deps = { pool: world.pool, tokens, box: world.box };
    const meta = { ip: '192.0.2.1', userAgent: null };
    await expect(
      enrollCollector(deps, 'not-a-secret', { name: `w-${randomUUID().slice(0, 6)}`, hostname: 'h' }, meta),
    ).rejects.toThrow(InvalidEnrollmentSecret);
    expect(signed).toBe(0);
    const secret = `sign-${randomUUID()}`;
    await world.pool.query(`INSERT INTO enrollment_secrets (name, secret_hash) VALUES ('sign', $1)`, [sha256Hex(secret)]);
    const ok = await enrollCollector(deps, secret, { name: `s-${randomUUID().slice(0, 6)}`, hostname: 'h' }, meta);
    expect(signed).toBe(1);
    expect((await world.tokens.verify(ok.issued.token)).sub).toBe(ok.id);
  });

  it('enrollment: 10 failed enrollments from one address, then 429 with Retry-After but for a live secret; counted by reason', async () => {
    const edge = await world.startEdge();
    const secret = `limited-${randomUUID()}`;
    await world.pool.query(`INSERT INTO enrollment_secrets (name, secret_hash) VALUES ('limited', $1)`, [sha256Hex(secret)]);
    const register = (s: string | null) =>
      call(`${edge.url}/api/v1/collectors/register`, {
        body: JSON.stringify({ name: `l-${randomUUID().slice(0, 8)}`, hostname: 'h' }),
        headers: s === null ? {} : { 'x-registration-secret': s },
      });
    // A good secret and a missing one are not failures the limit counts.
    expect((await register(secret)).status).toBe(200);
    expect((await register(null)).status).toBe(401);
    for (let i = 0; i < 10; i++) expect((await register(`wrong-${i}`)).status).toBe(401);
    const limited = await register('wrong-again');
    expect([limited.status, limited.json.error.code]).toEqual([429, 'RATE_LIMITED']);
    expect(Number(limited.headers.get('retry-after'))).toBe(30);
    // Review 28 item 5: many collectors can share an address (a proxy, a load balancer, a NAT), so
    // wrong secrets from some must not lock the others out: a live secret still enrolls from it
    // (it got 429 too), and only secrets that cannot enroll wait.
    expect((await register(secret)).status).toBe(200);
    const dead = await Promise.all(
      [`expires_at = now() - interval '1 minute'`, `revoked_at = now()`, `max_uses = 1, uses = 1`].map(async (state, i) => {
        const s = `dead-${i}-${randomUUID()}`;
        await world.pool.query(`INSERT INTO enrollment_secrets (name, secret_hash) VALUES ('dead', $1)`, [sha256Hex(s)]);
        await world.pool.query(`UPDATE enrollment_secrets SET ${state} WHERE secret_hash = $1`, [sha256Hex(s)]);
        return s;
      }),
    );
    for (const s of dead) expect((await register(s)).status).toBe(429);
    expect((await register(secret)).status).toBe(200);
    const metrics = await (await fetch(`${edge.url}/metrics`)).text();
    const failures = (reason: string) =>
      Number(new RegExp(`^edge_enrollment_failures_total\\{reason="${reason}"\\} (\\d+)$`, 'm').exec(metrics)?.[1]);
    expect([failures('missing_secret'), failures('invalid_secret'), failures('rate_limited')]).toEqual([1, 10, 4]);
    // The other edge (another process, in production) keeps its own count.
    expect(
      (
        await call(`${url}/api/v1/collectors/register`, {
          body: '{"name":"x","hostname":"h"}',
          headers: { 'x-registration-secret': 'wrong' },
        })
      ).status,
    ).toBe(401);
  });

  it('enrollment behind a load balancer (TRUST_PROXY): each forwarded client has its own failure limit and audit address', async () => {
    const edge = await world.startEdge({ TRUST_PROXY: 'true' });
    const secret = `lb-${randomUUID()}`;
    await world.pool.query(`INSERT INTO enrollment_secrets (name, secret_hash) VALUES ('lb', $1)`, [sha256Hex(secret)]);
    // Raw: fetch cannot send X-Forwarded-For twice.
    const register = (s: string, forwardedFor: string | string[]) => {
      const body = JSON.stringify({ name: `b-${randomUUID().slice(0, 8)}`, hostname: 'h' });
      return rawRequest(edge.port, [
        `POST /api/v1/collectors/register HTTP/1.1\r\nHost: edge\r\nConnection: close\r\nContent-Type: application/json\r\n` +
          [forwardedFor]
            .flat()
            .map((f) => `X-Forwarded-For: ${f}\r\n`)
            .join('') +
          `X-Registration-Secret: ${s}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      ]);
    };
    // Every request comes from the balancer's address (127.0.0.1); the client is the entry it appended.
    // The first client's ten failures lock out that client, and its own text left of the balancer's entry changes nothing.
    for (let i = 0; i < 10; i++) expect((await register(`wrong-${i}`, `203.0.113.${i}, 198.51.100.1`)).status).toBe(401);
    expect((await register('wrong', '198.51.100.1')).status).toBe(429);
    expect((await register('wrong', '10.9.9.9, 198.51.100.1')).status).toBe(429);
    // A second client behind the same balancer is not: its wrong secret is a 401, its good one enrolls…
    expect((await register('wrong', '198.51.100.2')).status).toBe(401);
    const ok = await register(secret, ['10.0.0.1', '198.51.100.2']);
    expect(ok.status).toBe(200);
    // …and its audit entry names it, not the balancer (the last of two X-Forwarded-For headers).
    const { collector_id } = JSON.parse(ok.body) as { collector_id: string };
    const audit = await world.pool.query('SELECT host(ip_address) AS ip FROM collector_audit_log WHERE collector_id = $1', [
      collector_id,
    ]);
    expect(audit.rows).toEqual([{ ip: '198.51.100.2' }]);
  });

  it('enrollment behind a balancer that appends ip:port (TRUST_PROXY): each client its own limit; an entry that is no address is the peer', async () => {
    const edge = await world.startEdge({ TRUST_PROXY: 'true' });
    const secret = `port-${randomUUID()}`;
    await world.pool.query(`INSERT INTO enrollment_secrets (name, secret_hash) VALUES ('port', $1)`, [sha256Hex(secret)]);
    const register = (s: string, forwardedFor: string) =>
      call(`${edge.url}/api/v1/collectors/register`, {
        body: JSON.stringify({ name: `p-${randomUUID().slice(0, 8)}`, hostname: 'h' }),
        headers: { 'x-registration-secret': s, 'x-forwarded-for': forwardedFor },
      });
    const auditIp = async (res: { json: { collector_id: string } }) =>
      (
        await world.pool.query('SELECT host(ip_address) AS ip FROM collector_audit_log WHERE collector_id = $1', [
          res.json.collector_id,
        ])
      ).rows;
    // Ten clients, one wrong secret each (Azure Application Gateway: ip:port): not one shared 'unknown' bucket…
    for (let i = 0; i < 10; i++) expect((await register(`wrong-${i}`, `198.51.100.${i}:5${i}000`)).status).toBe(401);
    expect((await register('wrong', '198.51.100.50:4431')).status).toBe(401);
    // …and one client, however its address is written, is one.
    for (let i = 0; i < 9; i++) expect((await register(`wrong-${i}`, `203.0.113.77:${1000 + i}`)).status).toBe(401);
    expect((await register('wrong', '[::ffff:203.0.113.77]:443')).status).toBe(401);
    expect((await register('wrong', '203.0.113.77')).status).toBe(429);
    const ok = await register(secret, '[2001:db8::5]:443');
    expect(ok.status).toBe(200);
    expect(await auditIp(ok)).toEqual([{ ip: '2001:db8::5' }]);
    // Not an address: the balancer's own (the TCP peer, written as IPv4), not null.
    const peer = await register(secret, 'unknown');
    expect(peer.status).toBe(200);
    expect(await auditIp(peer)).toEqual([{ ip: '127.0.0.1' }]);
  });

  it('enrollment behind TRUST_PROXY: an IPv6 client is its /64, it cannot leave the limit by taking another address of it', async () => {
    const edge = await world.startEdge({ TRUST_PROXY: 'true' });
    const register = (s: string, forwardedFor: string) =>
      call(`${edge.url}/api/v1/collectors/register`, {
        body: '{"name":"x","hostname":"h"}',
        headers: { 'x-registration-secret': s, 'x-forwarded-for': forwardedFor },
      });
    for (let i = 0; i < 10; i++) expect((await register(`wrong-${i}`, `2001:db8:7:7::${i + 1}`)).status).toBe(401);
    const limited = await register('wrong', '2001:db8:7:7:abcd:1234:5678:9');
    expect([limited.status, limited.json.error.code]).toEqual([429, 'RATE_LIMITED']);
    // The next /64 is another client.
    expect((await register('wrong', '2001:db8:7:8::1')).status).toBe(401);
  });

  it('enrollment without TRUST_PROXY: X-Forwarded-For is ignored, a client cannot leave its limit by writing one', async () => {
    const edge = await world.startEdge();
    const register = (s: string, forwardedFor: string) =>
      call(`${edge.url}/api/v1/collectors/register`, {
        body: '{"name":"x","hostname":"h"}',
        headers: { 'x-registration-secret': s, 'x-forwarded-for': forwardedFor },
      });
    for (let i = 0; i < 10; i++) expect((await register(`wrong-${i}`, `203.0.113.${i}`)).status).toBe(401);
    const limited = await register('wrong', '198.51.100.77');
    expect([limited.status, limited.json.error.code]).toEqual([429, 'RATE_LIMITED']);
  });

  it('refresh-token: empty chunked body; both tokens work afterwards', async () => {
    const r = await world.collector();
    const res = await rawRequest(port, [
      `POST /api/v1/collectors/refresh-token HTTP/1.1\r\nHost: edge\r\nAuthorization: Bearer ${r.token}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
    ]);
    expect(res.status).toBe(200);
    const answer = JSON.parse(res.body) as { token: string; expires_at: string };
    expect(answer.token).not.toBe(r.token);
    expect(Date.parse(answer.expires_at)).toBeGreaterThan(Date.now() + 300 * 86_400_000);
    for (const token of [answer.token, r.token])
      expect((await call(`${url}/api/v1/metrics/push`, { token, body: `{"t":"${token.slice(-8)}"}` })).status).toBe(200);
    const { rows } = await world.pool.query('SELECT count(*)::int AS n FROM collector_tokens WHERE collector_id = $1', [r.id]);
    expect(rows[0].n).toBe(2);
  });

  /**
   * The edge's deny state learns a rotation, revocation, disable or delete from a Redis publish sent
   * after the admin's commit: a refresh arriving in between passed it and minted a live one-year
   * token from a revoked one (security review M3). Here the database says so and the edge's deny
   * state does not (nothing published): the refresh must ask the database.
   */
  it('refresh-token: refused when the database revoked the token, disabled or deleted the collector, before the edge heard', async () => {
    const refresh = (who: TestCollector) => call(`${url}/api/v1/collectors/refresh-token`, { token: who.token, body: '' });
    const tokensOf = async (id: string) =>
      (await world.pool.query('SELECT count(*)::int AS n FROM collector_tokens WHERE collector_id = $1', [id])).rows[0].n;

    const revoked = await world.collector();
    await world.pool.query(`UPDATE collector_tokens SET revoked_at = now(), revoked_reason = 'rotated' WHERE jti = $1`, [
      revoked.issued.jti,
    ]);
    const r1 = await refresh(revoked);
    expect([r1.status, r1.json.error?.code, r1.json.error?.message]).toEqual([401, 'UNAUTHORIZED', 'token was revoked']);
    expect(await tokensOf(revoked.id)).toBe(1);

    const disabled = await world.collector();
    await world.pool.query('UPDATE collectors SET enabled = false WHERE id = $1', [disabled.id]);
    const r2 = await refresh(disabled);
    expect([r2.status, r2.json.error?.code, r2.json.error?.message]).toEqual([
      403,
      'COLLECTOR_DISABLED',
      'collector is disabled',
    ]);
    expect(await tokensOf(disabled.id)).toBe(1);

    const deleted = await world.collector();
    await world.pool.query('UPDATE collectors SET deleted_at = now() WHERE id = $1', [deleted.id]);
    const r3 = await refresh(deleted);
    expect([r3.status, r3.json.error?.code, r3.json.error?.message]).toEqual([401, 'UNAUTHORIZED', 'collector was deleted']);
    expect(await tokensOf(deleted.id)).toBe(1);
  });

  /**
   * The race itself, made deterministic: an admin's rotation holds the collector's row lock (as
   * rotateToken does) and has revoked the token, not committed; the refresh waits for the lock; the
   * rotation commits. The refresh must see the commit (its check runs in a statement after the lock,
   * with a snapshot taken then) and refuse.
   */
  it('refresh-token: a refresh waiting on a rotation’s row lock sees the revocation once it commits', async () => {
    const r = await world.collector();
    const admin = await world.pool.connect();
    try {
      await admin.query('BEGIN');
      await admin.query('SELECT 1 FROM collectors WHERE id = $1 FOR UPDATE', [r.id]);
      await admin.query(`UPDATE collector_tokens SET revoked_at = now(), revoked_reason = 'rotated' WHERE jti = $1`, [
        r.issued.jti,
      ]);
      const pending = call(`${url}/api/v1/collectors/refresh-token`, { token: r.token, body: '' });
      await waitUntil(
        async () =>
          (
            await world.pool.query(
              `SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%FOR UPDATE%'`,
            )
          ).rowCount === 1,
        10_000,
        'the refresh to wait for the row lock',
      );
      await admin.query('COMMIT');
      const res = await pending;
      expect([res.status, res.json.error?.message]).toEqual([401, 'token was revoked']);
    } finally {
      await admin.query('ROLLBACK').catch(() => undefined);
      admin.release();
    }
    const { rows } = await world.pool.query('SELECT count(*)::int AS n FROM collector_tokens WHERE collector_id = $1', [r.id]);
    expect(rows[0].n).toBe(1);
  });

  it('refresh-token: a burst of 5 per collector, then 429 with Retry-After (one valid token cannot mint without limit)', async () => {
    const r = await world.collector();
    const refresh = (token = r.token) => call(`${url}/api/v1/collectors/refresh-token`, { token, body: '' });
    for (let i = 0; i < 5; i++) expect((await refresh()).status).toBe(200);
    const limited = await refresh();
    expect([limited.status, limited.json.error.code]).toEqual([429, 'RATE_LIMITED']);
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    const { rows } = await world.pool.query('SELECT count(*)::int AS n FROM collector_tokens WHERE collector_id = $1', [r.id]);
    expect(rows[0].n).toBe(6);
    // Another collector is not held up by it.
    const other = await world.collector();
    expect((await refresh(other.token)).status).toBe(200);
  });
});
