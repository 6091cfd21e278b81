import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openTargetConnection } from '@pga/collector';
import type { CollectorConfig } from '@pga/contracts';
import {
  findExecutable,
  freePort,
  POSTGRES_BIN_DIRS,
  startPostgres,
  startOnFreePort,
  type PostgresHandle,
} from '@pga/local-stack';
import { testConnection } from '../../services/admin-api/src/connection-test/test-connection';
import { testEnv } from '../helpers';

/**
 * Security review M2: the collector took ssl_mode "prefer" (the default) as no TLS, and gave the
 * password to any server that asked for it in cleartext. Now prefer/allow try TLS and fall back to
 * plain text only when the server says 'N', and a cleartext password is never sent without TLS
 * unless ssl_mode is "disable"; SCRAM and MD5 work as before.
 */
const PASSWORD = 'target "pw" 1';
const target = (
  port: number,
  ssl_mode: string,
  who: { username?: string; password?: string; database?: string } = {},
): { target: CollectorConfig['target'] } => ({
  target: {
    type: 'postgresql',
    host: '127.0.0.1',
    port,
    database: who.database ?? 'postgres',
    username: who.username ?? 'postgres',
    password: who.password ?? PASSWORD,
    ssl_mode,
  },
});
const usesTls = async (port: number, mode: string, who: { username?: string; password?: string } = {}) => {
  const conn = await openTargetConnection(target(port, mode, who), { statementTimeoutMs: 5000 });
  try {
    const [row] = await conn.query<{ ssl: boolean }>('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
    return row!.ssl;
  } finally {
    await conn.close();
  }
};

/** A self-signed certificate and key the server account can read (root-owned 0640, its group). */
function certificate(dir: string): { cert: string; key: string } {
  mkdirSync(dir, { recursive: true });
  chmodSync(dir, 0o755);
  const cert = path.join(dir, 'server.crt');
  const key = path.join(dir, 'server.key');
  const made = spawnSync(
    'openssl',
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost', '-keyout', key, '-out', cert],
    {
      encoding: 'utf8',
    },
  );
  if (made.status !== 0) throw new Error(`openssl: ${made.stderr}`);
  if (process.getuid?.() === 0) {
    const gid = Number(spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).stdout.trim());
    chownSync(key, 0, gid);
    chmodSync(key, 0o640);
  } else chmodSync(key, 0o600);
  chmodSync(cert, 0o644);
  return { cert, key };
}

/**
 * Review 28 item 3: a server with TLS on whose pg_hba.conf has only hostnossl lines for us (or a
 * hostssl … reject line) refuses the TLS session with an ErrorResponse during startup, before
 * authentication. libpq's prefer connects again without TLS then (psql does); the collector gave
 * up with "no pg_hba.conf entry … SSL encryption".
 */
const HBA = [
  'local all all trust',
  'hostssl all postgres 127.0.0.1/32 reject',
  'hostnossl all cleartext 127.0.0.1/32 password',
  'hostnossl all all 127.0.0.1/32 scram-sha-256',
  '',
].join('\n');

describe('collector target connection: TLS and password safety', () => {
  let withTls: PostgresHandle;
  let withoutTls: PostgresHandle;
  let noSslHba: PostgresHandle;
  beforeAll(async () => {
    const base = path.join(testEnv.dataDir, `target-tls-${randomUUID().slice(0, 8)}`);
    const { cert, key } = certificate(path.join(base, 'tls'));
    const hba = path.join(base, 'tls', 'pg_hba.conf');
    writeFileSync(hba, HBA);
    chmodSync(hba, 0o644);
    [withTls, withoutTls, noSslHba] = await Promise.all([
      startOnFreePort((port) =>
        startPostgres({
          dataDir: path.join(base, 'tls-on'),
          port,
          password: PASSWORD,
          ephemeral: true,
          settings: { ssl: 'on', ssl_cert_file: cert, ssl_key_file: key },
        }),
      ),
      startOnFreePort((port) =>
        startPostgres({ dataDir: path.join(base, 'tls-off'), port, password: PASSWORD, ephemeral: true }),
      ),
      startOnFreePort((port) =>
        startPostgres({
          dataDir: path.join(base, 'tls-on-hostnossl'),
          port,
          password: PASSWORD,
          ephemeral: true,
          settings: { ssl: 'on', ssl_cert_file: cert, ssl_key_file: key, hba_file: hba },
        }),
      ),
    ]);
    // Its url is plain text (hostnossl): the roles the hostnossl tests log in as.
    const admin = new pg.Client({ connectionString: noSslHba.url });
    await admin.connect();
    try {
      await admin.query(`CREATE ROLE nossl LOGIN PASSWORD '${PASSWORD.replace(/'/g, "''")}'`);
      await admin.query(`CREATE ROLE cleartext LOGIN PASSWORD '${PASSWORD.replace(/'/g, "''")}'`);
    } finally {
      await admin.end();
    }
  }, 180_000);
  afterAll(async () => Promise.all([withTls?.stop(), withoutTls?.stop(), noSslHba?.stop()]));

  it('prefer and allow use TLS when the server offers it (SCRAM over it); disable does not', async () => {
    expect(await usesTls(withTls.port, 'prefer')).toBe(true);
    expect(await usesTls(withTls.port, 'allow')).toBe(true);
    expect(await usesTls(withTls.port, 'require')).toBe(true);
    expect(await usesTls(withTls.port, 'disable')).toBe(false);
  });

  it('prefer and allow fall back to plain text when the server says no to TLS; require does not', async () => {
    expect(await usesTls(withoutTls.port, 'prefer')).toBe(false);
    expect(await usesTls(withoutTls.port, 'allow')).toBe(false);
    await expect(usesTls(withoutTls.port, 'require')).rejects.toThrow(/does not support SSL/);
  });

  it('prefer and allow connect without TLS when the server refuses the TLS session before authentication (hostnossl only), as psql does', async () => {
    // libpq's prefer, for reference: connects, without TLS.
    const psql = spawnSync(
      findExecutable('psql', POSTGRES_BIN_DIRS)!,
      [
        '-h',
        '127.0.0.1',
        '-p',
        String(noSslHba.port),
        '-U',
        'postgres',
        '-d',
        'postgres',
        '-Atc',
        'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()',
      ],
      { encoding: 'utf8', env: { ...process.env, PGPASSWORD: PASSWORD, PGSSLMODE: 'prefer' } },
    );
    expect([psql.status, psql.stdout.trim()]).toEqual([0, 'f']);
    // "pg_hba.conf rejects connection … SSL encryption" (hostssl … reject), then SCRAM in plain text.
    expect(await usesTls(noSslHba.port, 'prefer')).toBe(false);
    expect(await usesTls(noSslHba.port, 'allow')).toBe(false);
    // "no pg_hba.conf entry … SSL encryption" (no hostssl line for the role).
    expect(await usesTls(noSslHba.port, 'prefer', { username: 'nossl' })).toBe(false);
    // require, verify-*: TLS or nothing.
    await expect(usesTls(noSslHba.port, 'require')).rejects.toThrow(
      /^target-connect: pg_hba\.conf rejects connection for host "127\.0\.0\.1", user "postgres", database "postgres", SSL encryption$/,
    );
    await expect(usesTls(noSslHba.port, 'require', { username: 'nossl' })).rejects.toThrow(
      /no pg_hba\.conf entry .*SSL encryption$/,
    );
  });

  it("the admin's connection test agrees with the collector there: prefer and allow connect (without TLS), require does not", async () => {
    const probe = (ssl_mode: string, who: { username?: string; password?: string } = {}) =>
      testConnection({
        type: 'postgresql',
        host: '127.0.0.1',
        port: noSslHba.port,
        database: 'postgres',
        username: who.username ?? 'postgres',
        password: who.password ?? PASSWORD,
        ssl_mode,
      });
    for (const mode of ['prefer', 'allow']) {
      expect(await probe(mode)).toMatchObject({ ok: true, failed_stage: null });
      expect(await probe(mode, { username: 'nossl' })).toMatchObject({ ok: true, failed_stage: null });
    }
    const refused = await probe('require');
    expect(refused).toMatchObject({ ok: false, failed_stage: 'auth' });
    expect(refused.message).toMatch(/refused the login of user "postgres" \(SQLSTATE 28000\)/);
    // a wrong password: refused without TLS too, said once
    const wrong = await probe('prefer', { password: 'wrong' });
    expect(wrong).toMatchObject({ ok: false, failed_stage: 'auth' });
    expect(wrong.message).toMatch(/SQLSTATE 28P01/);
    // The answer says the login was made without TLS (its TLS stage passed).
    expect((await probe('prefer')).message).toMatch(/^connected to .* without TLS: the server refused the login over TLS/);
    // Review 29: the plain-text retry handed a password asked for in cleartext to the server (ok: true
    // where the collector refuses); now refused as the collector refuses it.
    const cleartext = await probe('prefer', { username: 'cleartext' });
    expect(cleartext).toMatchObject({ ok: false, failed_stage: 'auth' });
    expect(cleartext.message).toMatch(
      /asked for the password in cleartext over a connection without TLS; not sent \(ssl_mode "prefer"\)/,
    );
    // ssl_mode "disable" sends it, as the collector does (the operator's explicit choice)
    expect(await probe('disable', { username: 'cleartext' })).toMatchObject({ ok: true });
  });

  it('after such a refusal, the plain-text attempt still sends no cleartext password, and both refusals are reported', async () => {
    const err = await usesTls(noSslHba.port, 'prefer', { username: 'cleartext' }).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(err?.message).toMatch(
      /^target-connect: no pg_hba\.conf entry for host "127\.0\.0\.1", user "cleartext", database "postgres", SSL encryption \(with TLS\); without TLS: the server asked for the password in cleartext over a connection without TLS; not sent \(ssl_mode "prefer"\)/,
    );
    // A wrong password: refused over TLS by pg_hba.conf, then by the password check.
    await expect(usesTls(noSslHba.port, 'prefer', { password: 'wrong' })).rejects.toThrow(
      /^target-connect: pg_hba\.conf rejects connection .*SSL encryption \(with TLS\); without TLS: password authentication failed for user "postgres"$/,
    );
  });

  it('an error after authentication over TLS is no reason to try plain text; one before it is, as in libpq', async () => {
    await expect(
      openTargetConnection(target(withTls.port, 'prefer', { database: 'no_such_db' }), { statementTimeoutMs: 5000 }),
    ).rejects.toThrow(/^target-connect: database "no_such_db" does not exist$/);
    await expect(usesTls(withTls.port, 'prefer', { password: 'wrong' })).rejects.toThrow(
      /^target-connect: password authentication failed for user "postgres" \(with TLS\); without TLS: /,
    );
  });

  describe('a server that says no to TLS and asks for the password', () => {
    let server: Server;
    let port: number;
    /** What each connection sent as its password message ('p'), by method the fake asked for. */
    const received: string[] = [];
    let method: 'cleartext' | 'md5' = 'cleartext';
    beforeAll(async () => {
      server = createServer((socket: Socket) => {
        let buf = Buffer.alloc(0);
        let started = false;
        socket.on('data', (d) => {
          buf = Buffer.concat([buf, d]);
          if (!started) {
            if (buf.length < 8 || buf.length < buf.readInt32BE(0)) return;
            const code = buf.readInt32BE(4);
            buf = buf.subarray(buf.readInt32BE(0));
            if (code === 80877103) return void socket.write('N'); // SSLRequest: no
            started = true;
            const r = Buffer.alloc(method === 'md5' ? 13 : 9);
            r.write('R');
            r.writeInt32BE(method === 'md5' ? 12 : 8, 1);
            r.writeInt32BE(method === 'md5' ? 5 : 3, 5);
            if (method === 'md5') r.write('salt', 9);
            socket.write(r);
            return;
          }
          if (buf[0] === 0x70 && buf.length >= 5 && buf.length >= 1 + buf.readInt32BE(1)) {
            received.push(buf.subarray(5, buf.readInt32BE(1)).toString());
            socket.destroy();
          }
        });
        socket.on('error', () => undefined);
      });
      port = await freePort();
      await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    });
    afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

    it('a cleartext request gets no password unless ssl_mode is disable, and the error says why', async () => {
      method = 'cleartext';
      for (const mode of ['prefer', 'allow']) {
        const err = await openTargetConnection(target(port, mode), { statementTimeoutMs: 5000 }).then(
          () => undefined,
          (e: Error) => e,
        );
        expect(err?.message).toMatch(
          /target-connect: the server asked for the password in cleartext over a connection without TLS; not sent/,
        );
        expect(err?.message).toContain('ssl_mode "disable"');
      }
      expect(received).toEqual([]);
      // The operator's explicit choice: sent (the fake then hangs up).
      await expect(openTargetConnection(target(port, 'disable'), { statementTimeoutMs: 5000 })).rejects.toThrow();
      expect(received).toEqual([PASSWORD]);
    });

    it('an MD5 request is still answered over plain text (the password itself does not cross the wire)', async () => {
      method = 'md5';
      received.length = 0;
      await expect(openTargetConnection(target(port, 'prefer'), { statementTimeoutMs: 5000 })).rejects.toThrow();
      expect(received).toHaveLength(1);
      expect(received[0]).toMatch(/^md5[0-9a-f]{32}$/);
    });
  });
});
