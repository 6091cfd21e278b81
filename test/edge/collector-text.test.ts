import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256Hex } from '@pga/crypto';
import { call, EdgeWorld, type TestCollector } from './harness';

/**
 * Text a collector chooses and admins read, against a real edge, Redis and PostgreSQL (authzrev
 * F6): names and host names with invisible or reordering characters are refused with the code
 * point named; a version or an error text keeps no control characters.
 */
describe('collector-chosen text (enrollment, heartbeat)', () => {
  let world: EdgeWorld;
  let url: string;
  let c: TestCollector;
  let secret: string;
  const register = (body: unknown) =>
    call(`${url}/api/v1/collectors/register`, { body: JSON.stringify(body), headers: { 'x-registration-secret': secret } });

  beforeAll(async () => {
    world = await EdgeWorld.create();
    url = (await world.startEdge()).url;
    c = await world.collector();
    secret = `text-${randomUUID()}`;
    await world.pool.query(`INSERT INTO enrollment_secrets (name, secret_hash, max_uses) VALUES ('text', $1, 20)`, [
      sha256Hex(secret),
    ]);
  });
  afterAll(async () => world?.[Symbol.asyncDispose]());

  it('a name or host name with a format character (zero-width, bidi override, BOM, soft hyphen) is a 400 naming its code point; nothing enrolled', async () => {
    for (const [field, body, point] of [
      ['name', { name: 'coll-a\u200b', hostname: 'h' }, 'U+200B at character 7'],
      ['name', { name: '\u202elanretni-dorp', hostname: 'h' }, 'U+202E at character 1'],
      ['name', { name: 'db\u2066x\u2069', hostname: 'h' }, 'U+2066 at character 3'],
      ['name', { name: 'db\u00adprod', hostname: 'h' }, 'U+00AD at character 3'],
      ['hostname', { name: 'fine-name', hostname: 'host\u202e' }, 'U+202E at character 5'],
      ['hostname', { name: 'fine-name', hostname: 'a\ufeffb' }, 'U+FEFF at character 2'],
      ['name', { name: 'prod\u200d', hostname: 'h' }, 'U+200D at character 5'],
      ['name', { name: 'pr\u200cod', hostname: 'h' }, 'U+200C at character 3'],
      ['hostname', { name: 'fine-name', hostname: '\u{1d51e}\u{1d51f}-\u200dx' }, 'U+200D at character 4'],
      ['hostname', { name: 'fine-name', hostname: '\u{1f418}\u200d\u{1f418}' }, 'U+200D at character 2'],
    ] as const) {
      const res = await register(body);
      expect([res.status, res.json.error.code]).toEqual([400, 'VALIDATION_FAILED']);
      expect(res.json.error.message).toContain(field);
      expect(res.json.error.message).toContain(`must not contain invisible or formatting characters: ${point}`);
    }
    const { rows } = await world.pool.query(
      `SELECT count(*)::int AS n FROM collectors WHERE name IN ('fine-name', 'coll-a\u200b')`,
    );
    expect(rows[0].n).toBe(0);
  });

  it('what a real collector sends still enrolls: non-Latin letters, emoji, spaces, dots; the version is stored without control characters', async () => {
    for (const name of ['db-7.prod.internal', 'Продакшн база', '数据库 1', 'café ☕', 'pg 🐘']) {
      const res = await register({ name, hostname: name, version: '1.0.0' });
      expect(res.status).toBe(200);
    }
    // Format characters that are part of the text: a whole emoji (ZWJ, tag characters), ZWNJ/ZWJ
    // inside a Persian or Hindi word. Stored as given.
    for (const name of [
      'db-👨\u200d👩\u200d👧',
      'می\u200cخواهم',
      'क्\u200dष',
      '🏴\u{e0067}\u{e0062}\u{e0073}\u{e0063}\u{e0074}\u{e007f}',
    ]) {
      const res = await register({ name, hostname: name, version: '1.0.0' });
      expect([name, res.status]).toEqual([name, 200]);
      const { rows } = await world.pool.query('SELECT name, agent_hostname AS hostname FROM collectors WHERE id = $1', [
        res.json.collector_id,
      ]);
      expect(rows[0]).toEqual({ name, hostname: name });
    }
    const res = await register({ name: `v-${randomUUID()}`, hostname: 'h', version: '1.0\u001b[2J\n\u202e\u0085x' });
    expect(res.status).toBe(200);
    const { rows } = await world.pool.query('SELECT agent_version FROM collectors WHERE id = $1', [res.json.collector_id]);
    expect(rows[0].agent_version).toBe('1.0[2J  x');
  });

  it('a heartbeat: version and last_error keep no control characters (ESC, newlines, C1, bidi); U+0000 is still a 400', async () => {
    const hb = (body: unknown) =>
      call(`${url}/api/v1/collectors/${c.id}/heartbeat`, { token: c.token, body: JSON.stringify(body) });
    const res = await hb({
      status: 'error',
      version: '2.0\u001b]0;owned\u0007',
      last_error: 'target-connect: refused\r\n\tat x\u001b[31m\u009b\u202eevil',
    });
    expect(res.status).toBe(200);
    const stored = await world.redis.hgetall(world.keys.heartbeat(c.id));
    expect(stored.version).toBe('2.0]0;owned');
    expect(stored.last_error).toBe('target-connect: refused  at x[31mevil');
    expect((await hb({ last_error: 'a\u0000b' })).status).toBe(400);
  });

  it("the pganalytics-v3 fixture's version and host name pass unchanged", async () => {
    const fixture = JSON.parse(readFileSync(new URL('../fixtures/pganalytics-v3-push.sample.json', import.meta.url), 'utf8'));
    const res = await register({ name: `v3-${randomUUID()}`, hostname: fixture.hostname, version: fixture.version });
    expect(res.status).toBe(200);
    const { rows } = await world.pool.query('SELECT agent_hostname, agent_version FROM collectors WHERE id = $1', [
      res.json.collector_id,
    ]);
    expect(rows[0]).toEqual({ agent_hostname: fixture.hostname, agent_version: fixture.version });
  });
});
