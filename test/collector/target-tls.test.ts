import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openTargetConnection } from '@pga/collector';
import type { CollectorConfig } from '@pga/contracts';
import { freePort, startPostgres, type PostgresHandle } from '@pga/local-stack';
import { testEnv } from '../helpers';

/**
 * Security review M2: the collector took ssl_mode "prefer" (the default) as no TLS, and gave the
 * password to any server that asked for it in cleartext. Now prefer/allow try TLS and fall back to
 * plain text only when the server says 'N', and a cleartext password is never sent without TLS
 * unless ssl_mode is "disable"; SCRAM and MD5 work as before.
 */
const PASSWORD = 'target "pw" 1';
const target = (port: number, ssl_mode: string): { target: CollectorConfig['target'] } => ({
  target: {
    type: 'postgresql',
    host: '127.0.0.1',
    port,
    database: 'postgres',
    username: 'postgres',
    password: PASSWORD,
    ssl_mode,
  },
});
const usesTls = async (port: number, mode: string) => {
  const conn = await openTargetConnection(target(port, mode), { statementTimeoutMs: 5000 });
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

describe('collector target connection: TLS and password safety', () => {
  let withTls: PostgresHandle;
  let withoutTls: PostgresHandle;
  beforeAll(async () => {
    const base = path.join(testEnv.dataDir, `target-tls-${randomUUID().slice(0, 8)}`);
    const { cert, key } = certificate(path.join(base, 'tls'));
    [withTls, withoutTls] = await Promise.all([
      freePort().then((port) =>
        startPostgres({
          dataDir: path.join(base, 'tls-on'),
          port,
          password: PASSWORD,
          ephemeral: true,
          settings: { ssl: 'on', ssl_cert_file: cert, ssl_key_file: key },
        }),
      ),
      freePort().then((port) =>
        startPostgres({ dataDir: path.join(base, 'tls-off'), port, password: PASSWORD, ephemeral: true }),
      ),
    ]);
  }, 180_000);
  afterAll(async () => Promise.all([withTls?.stop(), withoutTls?.stop()]));

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
