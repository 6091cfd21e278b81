import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import path from 'node:path';
import pg from 'pg';
import { startPostgres, startOnFreePort, type PostgresHandle } from '@pga/local-stack';
import { testEnv } from '../helpers';
import { createHarness, type Harness } from './harness';
import { expectRejected, form } from './fixtures';
import { startMariaDb, type MariaDb } from './mariadb';

const APP_PASSWORD = 'App-Pa55word-for-tests';
const MY_PASSWORD = 'My-Pa55word-for-tests';

describe('collectors.testConnection', () => {
  let h: Harness;
  let target: PostgresHandle;
  let maria: MariaDb;
  beforeAll(async () => {
    const dir = path.join(testEnv.dataDir, `conn-${process.pid}`);
    [h, target, maria] = await Promise.all([
      createHarness(),
      startOnFreePort((port) =>
        startPostgres({ dataDir: path.join(dir, 'pg'), port, password: 'superuser-pw', ephemeral: true }),
      ),
      startMariaDb(path.join(dir, 'maria')),
    ]);
    const su = new pg.Client({ connectionString: target.url });
    await su.connect();
    await su.query(`CREATE ROLE app LOGIN PASSWORD '${APP_PASSWORD}'`);
    await su.query(`CREATE ROLE outsider LOGIN PASSWORD '${APP_PASSWORD}'`);
    await su.query('CREATE DATABASE appdb OWNER app');
    await su.query('CREATE DATABASE bare OWNER app');
    await su.query('REVOKE CONNECT ON DATABASE appdb FROM PUBLIC');
    await su.end();
    const appdb = new pg.Client({ connectionString: target.urlFor('appdb') });
    await appdb.connect();
    await appdb.query('CREATE EXTENSION pg_stat_statements');
    await appdb.end();
    const my = await maria.admin();
    await my.query('CREATE DATABASE shop');
    await my.query('CREATE DATABASE secret_db');
    await my.query(`CREATE USER 'shop'@'%' IDENTIFIED BY '${MY_PASSWORD}'`);
    await my.query("GRANT ALL ON shop.* TO 'shop'@'%'");
    await my.query(`CREATE USER 'dba'@'%' IDENTIFIED BY '${MY_PASSWORD}'`);
    await my.query("GRANT ALL ON *.* TO 'dba'@'%'");
    await my.end();
  });
  afterAll(async () => {
    await Promise.allSettled([h?.[Symbol.asyncDispose](), target?.stop(), maria?.stop()]);
  });

  const pgTarget = (o: Record<string, unknown> = {}) => ({
    type: 'postgresql' as const,
    host: '127.0.0.1',
    port: target.port,
    database: 'appdb',
    username: 'app',
    password: APP_PASSWORD,
    ssl_mode: 'disable' as const,
    ...o,
  });
  const myTarget = (o: Record<string, unknown> = {}) => ({
    type: 'mysql' as const,
    host: '127.0.0.1',
    port: maria.port,
    database: 'shop',
    username: 'shop',
    password: MY_PASSWORD,
    ssl_mode: 'disable' as const,
    ...o,
  });
  const test = (input: any) => h.caller(h.admin).collectors.testConnection(input);

  it('connects to PostgreSQL through a host name, reports the version and that pg_stat_statements is readable', async () => {
    const result = await test(pgTarget({ host: 'localhost', ssl_mode: 'prefer' }));
    expect(result).toMatchObject({ ok: true, supported: true, failed_stage: null });
    expect(result.server_version).toMatch(/^PostgreSQL \d+/);
    expect(result.pg_stat_statements).toMatchObject({ readable: true });
    expect(result.stages.map((s) => s.stage)).toEqual(['dns', 'tcp', 'tls', 'auth', 'query']);
    expect(JSON.stringify(result)).not.toContain(APP_PASSWORD);
  });

  it('says when pg_stat_statements is not installed', async () => {
    const result = await test(pgTarget({ database: 'bare' }));
    expect(result.ok).toBe(true);
    expect(result.pg_stat_statements).toMatchObject({ readable: false });
    expect(result.pg_stat_statements!.message).toContain('CREATE EXTENSION pg_stat_statements');
  });

  it.each([
    ['dns', { host: 'no-such-host.invalid' }, /does not resolve/],
    ['tcp', { port: 1 }, /connection refused/],
    ['tls', { ssl_mode: 'require' }, /does not accept TLS/],
    ['auth', { password: 'wrong-password-xyz' }, /refused the login of user "app"/],
    ['auth', { username: 'nobody' }, /refused the login/],
    ['database', { database: 'nope' }, /database "nope" does not exist/],
    ['permission', { username: 'outsider' }, /may not connect to database "appdb"/],
  ])('PostgreSQL: names the %s stage', async (stage, override, message) => {
    const result = await test(pgTarget(override));
    expect(result).toMatchObject({ ok: false, supported: true, failed_stage: stage });
    expect(result.message).toMatch(message);
    const text = JSON.stringify(result);
    expect(text).not.toContain(APP_PASSWORD);
    expect(text).not.toContain('wrong-password-xyz');
  });

  it('connects to MySQL (MariaDB) and reports its version', async () => {
    const result = await test(myTarget());
    expect(result).toMatchObject({ ok: true, supported: true, pg_stat_statements: null });
    expect(result.server_version).toMatch(/MariaDB/);
    expect(result.stages.map((s) => s.stage)).toEqual(['dns', 'tcp', 'auth', 'query']);
  });

  it.each([
    ['auth', { password: 'wrong-password-xyz' }, /refused the login of user "shop"/],
    // only a user with global privileges learns that a database is missing; others get 1044
    ['database', { database: 'nope', username: 'dba' }, /database "nope" does not exist/],
    ['permission', { database: 'secret_db' }, /no access to database "secret_db"/],
    ['permission', { database: 'nope' }, /no access to database "nope" \(or it does not exist\)/],
    ['tls', { ssl_mode: 'require' }, /does not accept TLS/],
    ['tcp', { port: 1 }, /connection refused/],
  ])('MySQL: names the %s stage', async (stage, override, message) => {
    const result = await test(myTarget(override));
    expect(result).toMatchObject({ ok: false, failed_stage: stage });
    expect(result.message).toMatch(message);
    expect(JSON.stringify(result)).not.toContain('wrong-password-xyz');
  });

  it('answers "not supported yet" for MongoDB and Oracle', async () => {
    for (const type of ['mongodb', 'oracle'])
      expect(await test(pgTarget({ type }))).toMatchObject({
        ok: false,
        supported: false,
        failed_stage: null,
        message: expect.stringMatching(/not supported yet/),
      });
  });

  it('tests a registered collector with its stored (decrypted) password', async () => {
    const { collector } = await h.caller(h.admin).collectors.register(form({ ...pgTarget(), group: undefined }));
    expect(await test({ collector_id: collector.id })).toMatchObject({ ok: true });
    expect(await test({ collector_id: collector.id, database: 'nope' })).toMatchObject({ ok: false, failed_stage: 'database' });
    // the stored password is never sent to another host or over weaker TLS than configured
    await expectRejected(test({ collector_id: collector.id, host: 'attacker.example.com' }), 'BAD_REQUEST', 'password');
    await expectRejected(test({ collector_id: collector.id, port: 1 }), 'BAD_REQUEST', 'password');
    await expectRejected(
      test({ collector_id: collector.id, ssl_certificate: '-----BEGIN CERTIFICATE-----\nMIIBx\n-----END CERTIFICATE-----' }),
      'BAD_REQUEST',
      'password',
    );
    // a stronger ssl_mode than the stored one (disable) protects the password more: allowed (one rule
    // with collectors.update, collectors/password-guard.ts; weakening is refused there and here)
    expect(await test({ collector_id: collector.id, ssl_mode: 'allow' })).toMatchObject({ ok: true });
    expect(await test({ collector_id: collector.id, port: 1, password: 'typed-in' })).toMatchObject({
      ok: false,
      failed_stage: 'tcp',
    });
  });

  it('refuses to register when the requested pre-registration test fails, and registers when it passes', async () => {
    const name = `tested-${Date.now()}`;
    await expectRejected(
      h.caller(h.admin).collectors.register(form({ ...pgTarget({ password: 'bad-one' }), name, test_connection: true })),
      'BAD_REQUEST',
      'connection',
    );
    const { rows } = await h.service.deps.pool.query('SELECT 1 FROM collectors WHERE name = $1', [name]);
    expect(rows).toHaveLength(0);
    const ok = await h.caller(h.admin).collectors.register(form({ ...pgTarget(), name, test_connection: true }));
    expect(ok.connection_test).toMatchObject({ ok: true });
  });

  it('requires the target fields when no collector is given, and the admin role', async () => {
    await expectRejected(test({ type: 'postgresql', host: '127.0.0.1' }), 'BAD_REQUEST', 'database');
    await expectRejected(h.caller(h.viewer).collectors.testConnection(pgTarget()), 'FORBIDDEN');
  });
});
