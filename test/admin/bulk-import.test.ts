import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { Redis } from 'ioredis';
import { hashToken } from '@pga/tokens';
import { createHarness, type Harness } from './harness';
import { expectRejected, form } from './fixtures';

const HEADER =
  'name,type,environment,group,host,port,database,username,password,ssl_mode,collection_interval,query_limit,tags,description';

function csvLine(name: string, o: Partial<Record<string, string>> = {}): string {
  const v = {
    type: 'postgresql',
    environment: 'production',
    group: 'AWS RDS',
    host: `${name}.db.example.com`,
    port: '5432',
    database: 'app',
    username: 'collector',
    password: `pw-${name}`,
    ssl_mode: 'require',
    collection_interval: '60',
    query_limit: '100',
    tags: 'prod;aws',
    description: '',
    ...o,
  };
  return [
    name,
    v.type,
    v.environment,
    v.group,
    v.host,
    v.port,
    v.database,
    v.username,
    v.password,
    v.ssl_mode,
    v.collection_interval,
    v.query_limit,
    v.tags,
    v.description,
  ].join(',');
}

describe('collectors.bulkImport', () => {
  let h: Harness;
  let redis: Redis;
  beforeAll(async () => {
    h = await createHarness();
    redis = new Redis(process.env.PGA_TEST_REDIS_URL!);
  });
  afterAll(async () => {
    redis?.disconnect();
    await h?.[Symbol.asyncDispose]();
  });
  const admin = () => h.caller(h.admin);
  const q = (sql: string, params: unknown[] = []) => h.service.deps.pool.query(sql, params).then((r) => r.rows);

  it('imports the good rows of a mixed CSV and reports each bad row with its field and reason (per-row)', async () => {
    await admin().collectors.register(form({ name: 'already-there' }));
    const csv = [
      HEADER,
      csvLine('good-1'),
      csvLine('bad-port', { port: '70000' }),
      csvLine('good-2', { tags: 'a;b;c', description: '"with, a comma and ""quotes"""' }),
      csvLine('bad-group', { group: 'Nowhere' }),
      csvLine('good-1', { host: 'other.example.com' }),
      csvLine('already-there'),
      csvLine('bad-interval', { collection_interval: '5' }),
      csvLine('bad-env', { environment: 'qa' }),
      csvLine('good-3', { type: 'mysql', port: '', group: '', ssl_mode: 'requireFull' }),
      csvLine('bad-tag', { tags: 'ok;not ok' }),
      '',
    ].join('\r\n');
    const result = await admin().collectors.bulkImport({ format: 'csv', content: csv });
    expect(result).toMatchObject({
      dry_run: false,
      mode: 'per_row',
      committed: true,
      total: 10,
      created: 3,
      errors: 5,
      skipped: 2,
    });
    const byRow = Object.fromEntries(result.rows.map((r) => [r.row, r]));
    expect(byRow[1]).toMatchObject({ name: 'good-1', status: 'created' });
    expect(byRow[2]).toMatchObject({ name: 'bad-port', status: 'error', field: 'port' });
    expect(byRow[4]).toMatchObject({ status: 'error', field: 'group', reason: 'group: no group named "Nowhere"' });
    expect(byRow[5]).toMatchObject({ name: 'good-1', status: 'skipped', reason: 'duplicate: the same name is on row 1' });
    expect(byRow[6]).toMatchObject({ name: 'already-there', status: 'skipped', reason: expect.stringMatching(/already exists/) });
    expect(byRow[7]).toMatchObject({ status: 'error', field: 'collection_interval' });
    expect(byRow[8]).toMatchObject({ status: 'error', field: 'environment' });
    expect(byRow[10]).toMatchObject({ status: 'error', field: 'tags.1' });

    const created = await q(
      "SELECT id, name, port, ssl_mode, tags, group_id, description, password_encrypted FROM collectors WHERE name LIKE 'good-%' ORDER BY name",
    );
    expect(created.map((c) => c.name)).toEqual(['good-1', 'good-2', 'good-3']);
    expect(created[1]).toMatchObject({ tags: ['a', 'b', 'c'], description: 'with, a comma and "quotes"' });
    expect(created[2]).toMatchObject({ port: 3306, ssl_mode: 'verify-full', group_id: null });
    expect(h.service.deps.secretBox.decrypt(created[0].password_encrypted, created[0].id)).toBe('pw-good-1');

    // tokens come back once as CSV; the database keeps only their hashes
    const lines = result.tokens_csv!.trim().split('\r\n');
    expect(lines[0]).toBe('name,collector_id,token,expires_at,central_api_url');
    expect(lines).toHaveLength(4);
    for (const line of lines.slice(1)) {
      const [name, id, token] = line.split(',');
      const claims = await h.service.deps.tokens.verify(token!);
      expect(claims.sub).toBe(id);
      expect(created.find((c) => c.name === name)!.id).toBe(id);
      expect(await q('SELECT token_hash FROM collector_tokens WHERE collector_id = $1', [id])).toEqual([
        { token_hash: hashToken(token!) },
      ]);
      expect(await redis.hget(h.service.deps.keys.configVersions, id!)).toBe('1');
    }
    const serializedRows = JSON.stringify(result.rows);
    expect(serializedRows).not.toMatch(/pw-good|eyJ/);
    const audits = await q(
      "SELECT action, new_values, details FROM collector_audit_log WHERE action IN ('collector.registered', 'collector.bulk_import') AND details ? 'bulk_import' OR action = 'collector.bulk_import'",
    );
    expect(audits.filter((a) => a.action === 'collector.registered')).toHaveLength(3);
    expect(audits.find((a) => a.action === 'collector.bulk_import')!.details).toMatchObject({ rows: 10, created: 3, failed: 5 });
    expect(JSON.stringify(audits)).not.toContain('pw-good');
  });

  it('refuses a row whose text has a lone surrogate or U+0000 (JSON escapes) with a row error, storing nothing altered', async () => {
    // JSON.stringify escapes both ("\ud800", "\u0000"): the request's content passes the check every
    // input gets, and these only exist once the file is parsed.
    const content = JSON.stringify([
      form({ name: 'esc-ok' }),
      form({ name: 'esc-\ud800' }),
      form({ name: 'esc-nul', description: 'a\u0000b' }),
    ]);
    expect(content).toContain('esc-\\ud800');
    for (const dry_run of [true, false]) {
      const result = await admin().collectors.bulkImport({ format: 'json', content, dry_run });
      expect(result).toMatchObject({ errors: 2, created: dry_run ? 0 : 1 });
      expect(result.rows[1]).toMatchObject({
        row: 2,
        name: 'esc-\ud800',
        status: 'error',
        field: 'name',
        reason: 'name: must not contain an unpaired UTF-16 surrogate (U+D800 to U+DFFF)',
      });
      expect(result.rows[2]).toMatchObject({
        row: 3,
        status: 'error',
        field: 'description',
        reason: 'description: must not contain U+0000',
      });
    }
    expect(await q("SELECT name FROM collectors WHERE name LIKE 'esc-%'")).toEqual([{ name: 'esc-ok' }]);
  });

  it('validates only on a dry run', async () => {
    const before = (await q('SELECT count(*)::int AS n FROM collectors'))[0].n;
    const result = await admin().collectors.bulkImport({
      format: 'csv',
      content: [HEADER, csvLine('dry-1'), csvLine('dry-2', { port: 'x' })].join('\n'),
      dry_run: true,
    });
    expect(result).toMatchObject({ dry_run: true, committed: false, created: 0, errors: 1, tokens_csv: null });
    expect(result.rows.map((r) => r.status)).toEqual(['valid', 'error']);
    expect((await q('SELECT count(*)::int AS n FROM collectors'))[0].n).toBe(before);
  });

  it('all-or-nothing imports nothing when one row fails, and everything when all pass', async () => {
    const bad = await admin().collectors.bulkImport({
      format: 'csv',
      content: [HEADER, csvLine('aon-1'), csvLine('aon-2', { query_limit: '0' })].join('\n'),
      mode: 'all_or_nothing',
    });
    expect(bad).toMatchObject({ committed: false, created: 0, errors: 1, tokens_csv: null });
    expect(bad.rows[0]).toMatchObject({ status: 'not_imported' });
    expect(await q("SELECT 1 FROM collectors WHERE name LIKE 'aon-%'")).toHaveLength(0);
    const good = await admin().collectors.bulkImport({
      format: 'csv',
      content: [HEADER, csvLine('aon-1'), csvLine('aon-2')].join('\n'),
      mode: 'all_or_nothing',
    });
    expect(good).toMatchObject({ committed: true, created: 2, errors: 0 });
  });

  it('accepts JSON (an array or {collectors}), with tags as a list or a ;-separated string', async () => {
    const rows = [form({ name: 'json-1', tags: ['x'] }), form({ name: 'json-2', tags: 'y;z' }), { name: 'json-3' }, 42];
    const result = await admin().collectors.bulkImport({ format: 'json', content: JSON.stringify({ collectors: rows }) });
    expect(result).toMatchObject({ created: 2, errors: 2 });
    expect(result.rows[2]).toMatchObject({ status: 'error', field: 'type' });
    expect(result.rows[3]).toMatchObject({ status: 'error', reason: 'expected an object with the collector fields' });
    expect((await q("SELECT tags FROM collectors WHERE name = 'json-2'"))[0].tags).toEqual(['y', 'z']);
    await expectRejected(admin().collectors.bulkImport({ format: 'json', content: '{"nope": 1}' }), 'BAD_REQUEST', 'content');
    await expectRejected(admin().collectors.bulkImport({ format: 'json', content: 'not json' }), 'BAD_REQUEST', 'content');
    await expectRejected(
      admin().collectors.bulkImport({ format: 'csv', content: 'name\n"unterminated' }),
      'BAD_REQUEST',
      'content',
    );
  });

  it('refuses more than 10,000 rows, and viewers', async () => {
    const content = JSON.stringify(Array.from({ length: 10_001 }, (_, i) => ({ name: `n${i}` })));
    await expectRejected(admin().collectors.bulkImport({ format: 'json', content }), 'BAD_REQUEST', 'content');
    await expectRejected(h.caller(h.viewer).collectors.bulkImport({ format: 'csv', content: HEADER }), 'FORBIDDEN');
  });

  it('fails the rows whose optional connection test fails', async () => {
    const result = await admin().collectors.bulkImport({
      format: 'csv',
      content: [
        HEADER,
        csvLine('ct-1', { host: '127.0.0.1', port: '1' }),
        csvLine('ct-2', { type: 'mongodb', port: '27017' }),
      ].join('\n'),
      test_connections: true,
    });
    expect(result.rows[0]).toMatchObject({
      status: 'error',
      field: 'connection',
      reason: expect.stringMatching(/^tcp: connection refused/),
    });
    expect(result.rows[1]).toMatchObject({ status: 'created' }); // MongoDB cannot be tested yet: not a failure
  });

  it('imports 2,000 rows through multi-row statements', async () => {
    const content = [HEADER, ...Array.from({ length: 2000 }, (_, i) => csvLine(`bulk-${i}`))].join('\n');
    const started = performance.now();
    const result = await admin().collectors.bulkImport({ format: 'csv', content });
    console.log(`bulk import of 2,000 rows took ${Math.round(performance.now() - started)} ms`);
    expect(result).toMatchObject({ created: 2000, errors: 0 });
    expect(
      (
        await q(
          "SELECT count(*)::int AS n FROM collector_tokens t JOIN collectors c ON c.id = t.collector_id WHERE c.name LIKE 'bulk-%'",
        )
      )[0].n,
    ).toBe(2000);
  });
});
