import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import path from 'node:path';
import { SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ConfigError, int, loadConfig, portAvailable } from '@pga/config';
import { poolConfigFromUrl } from '@pga/db';
import { parseJwtSecret } from '@pga/crypto';
import { createCollectorTokens } from '@pga/tokens';
import { readEdgeConfig } from '../../services/ingest-edge/src/config';
import { readWriterConfig } from '../../services/writer/src/config';
import { readAdminConfig } from '../../services/admin-api/src/config';

const root = path.resolve(import.meta.dirname, '../..');
const goodEnv = {
  DATABASE_URL: 'postgresql://u:p@127.0.0.1:5432/db',
  REDIS_URL: 'redis://127.0.0.1:6379',
  JWT_SECRET: 'x'.repeat(40),
  ENCRYPTION_KEY: Buffer.alloc(32, 1).toString('base64'),
};

describe('process configuration', () => {
  it('accepts a good environment and applies defaults', () => {
    const config = readEdgeConfig(goodEnv);
    expect(config.INGEST_PORT).toBe(8080);
    expect(config.JWT_ISSUER).toBe('pganalytics-central');
  });

  it('names the bad variable in one line', () => {
    expect(() => readEdgeConfig({ ...goodEnv, INGEST_PORT: 'eighty' })).toThrowError(ConfigError);
    expect(() => readEdgeConfig({ ...goodEnv, INGEST_PORT: 'eighty' })).toThrowError(
      /^invalid environment: INGEST_PORT: .*"eighty"/,
    );
    expect(() => readEdgeConfig({ ...goodEnv, DATABASE_URL: undefined })).toThrowError(/DATABASE_URL: .*not set/);
  });

  it('a listen address may be an IPv6 one in brackets, as in a URL ([::1], [::]): the brackets are taken off', () => {
    expect(readEdgeConfig({ ...goodEnv, INGEST_HOST: '[::]' }).INGEST_HOST).toBe('::');
    expect(readAdminConfig({ ...goodEnv, ADMIN_HOST: ' [::1] ' }).ADMIN_HOST).toBe('::1');
    expect(readWriterConfig({ ...goodEnv, WRITER_HOST: '[::1]' }).WRITER_HOST).toBe('::1');
    expect(readWriterConfig({ ...goodEnv, WRITER_HOST: '::' }).WRITER_HOST).toBe('::');
    expect(readEdgeConfig(goodEnv).INGEST_HOST).toBe('0.0.0.0');
    expect(readWriterConfig(goodEnv).WRITER_HOST).toBe('127.0.0.1');
  });

  it('an empty variable means its default, as an unset one does', () => {
    const config = readEdgeConfig({ ...goodEnv, INGEST_PORT: '', ENQUEUE_TIMEOUT_MS: ' ', PACK_MAX_PUSHES: '' });
    expect([config.INGEST_PORT, config.ENQUEUE_TIMEOUT_MS, config.PACK_MAX_PUSHES]).toEqual([8080, 2000, 100]);
    // A boolean's empty value used to read as false, whatever the default.
    const writer = readWriterConfig({ ...goodEnv, WRITER_MIGRATE: '', WRITER_REQUIRE_NOEVICTION: '' });
    const defaults = readWriterConfig(goodEnv);
    expect([writer.WRITER_MIGRATE, writer.WRITER_REQUIRE_NOEVICTION]).toEqual([
      defaults.WRITER_MIGRATE,
      defaults.WRITER_REQUIRE_NOEVICTION,
    ]);
    expect(defaults.WRITER_REQUIRE_NOEVICTION).toBe(true);
    expect(() => readWriterConfig({ ...goodEnv, WRITER_MIGRATE: 'maybe' })).toThrowError(
      /WRITER_MIGRATE: expected true or false/,
    );
  });

  it('a default outside its bounds is held to them (EDGE_PROCESSES defaults to the cores, at most 64)', () => {
    expect(int(100, 1, 64).parse(undefined)).toBe(64);
    expect(int(0, 1, 64).parse('')).toBe(1);
    expect(() => int(2, 1, 64).parse('100')).toThrow(/at most 64/);
  });

  it('a number is decimal digits: hex, exponents, fractions and binary are refused, not read as something else', () => {
    for (const value of ['0x10', '1e1', '1.5', '0b11', '12abc', 'Infinity'])
      expect(() => readWriterConfig({ ...goodEnv, METRICS_RETENTION_DAYS: value })).toThrowError(
        new RegExp(`^invalid environment: METRICS_RETENTION_DAYS: expected a whole number \\(got "${value}"\\)$`),
      );
    expect(() => readEdgeConfig({ ...goodEnv, INGEST_PORT: '0x1f90' })).toThrowError(/INGEST_PORT: expected a port number/);
    expect(readWriterConfig({ ...goodEnv, METRICS_RETENTION_DAYS: ' 30 ' }).METRICS_RETENTION_DAYS).toBe(30);
    expect(readEdgeConfig({ ...goodEnv, INGEST_PORT: '08081' }).INGEST_PORT).toBe(8081);
    expect(int(5, -10, 10).parse('-3')).toBe(-3);
  });

  it('never echoes a secret in the error, and shows what is not one', () => {
    // REDIS_KEY_PREFIX has KEY in its name but is no secret: its value used to be "[redacted]".
    expect(() => readWriterConfig({ ...goodEnv, REDIS_KEY_PREFIX: '' })).toThrowError(/REDIS_KEY_PREFIX: .*\(got ""\)/);
    expect(() => loadConfig(z.object({ ENCRYPTION_KEY: z.string().min(40) }), { ENCRYPTION_KEY: 'too-short-key' })).toThrowError(
      /ENCRYPTION_KEY: .*\(got "\[redacted\]"\)/,
    );
    let message = '';
    try {
      readEdgeConfig({ ...goodEnv, JWT_SECRET: 'short-secret-value' });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/JWT_SECRET/);
    expect(message).not.toContain('short-secret-value');
    // A URL that does not parse may still carry a password.
    for (const [value, shown] of [
      ['postgres//pga:SECRETPW@127.0.0.1:5432/db', 'postgres//***@127.0.0.1:5432/db'],
      ['pga:SECRETPW@127.0.0.1:5432/db', '***@127.0.0.1:5432/db'],
      ['postgresql//pga:p@ss:w@rd@127.0.0.1/db', 'postgresql//***@127.0.0.1/db'],
      // parses, but as host `u:1234` and a path: the password's unencoded `/` ends the authority
      ['mysql://u:1234/abcd@127.0.0.1/db', 'mysql://***@127.0.0.1/db'],
    ]) {
      try {
        readWriterConfig({ ...goodEnv, DATABASE_URL: value });
        message = '';
      } catch (err) {
        message = (err as Error).message;
      }
      expect(message).toContain(`(got "${shown}")`);
    }
  });

  it('DATABASE_URL: an sslmode libpq does not know, or an sslrootcert that cannot be read, is refused (it used to mean plain TCP)', () => {
    const db = (query: string) => readWriterConfig({ ...goodEnv, DATABASE_URL: `postgresql://u:p@127.0.0.1:5432/db?${query}` });
    expect(() => db('sslmode=verify_full')).toThrowError(
      /^invalid environment: DATABASE_URL: sslmode "verify_full" is not one of disable, allow, prefer, require, verify-ca, verify-full \(got "postgresql:\/\/u:\*\*\*@127/,
    );
    expect(() => db('sslmode=no-verify')).toThrowError(/sslmode "no-verify" is not one of/);
    expect(() => db('sslmode=verify-full&sslrootcert=/nonexistent/ca.pem')).toThrowError(
      /DATABASE_URL: sslrootcert \/nonexistent\/ca.pem cannot be read \(ENOENT\)/,
    );
    for (const mode of ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'])
      expect(() => db(`sslmode=${mode}`)).not.toThrow();
    expect(() => db(`sslmode=verify-full&sslrootcert=${encodeURIComponent(path.join(root, 'package.json'))}`)).not.toThrow();
    // libpq 16's sslrootcert=system: the system's CAs, nothing weaker than verify-full.
    expect(() => db('sslrootcert=system')).not.toThrow();
    expect(() => db('sslmode=verify-full&sslrootcert=system')).not.toThrow();
    expect(() => db('sslmode=require&sslrootcert=system')).toThrowError(
      /sslrootcert=system needs sslmode=verify-full \(or none\), not "require"/,
    );
  });

  it('DATABASE_URL to pg options: libpq semantics, require with a root certificate verifies the chain', () => {
    const ca = path.join(root, 'package.json'); // any readable file: only read, never parsed here
    const ssl = (query: string) => poolConfigFromUrl(`postgresql://u:p@db.example:5432/db?${query}`).ssl;
    expect(ssl('')).toBeUndefined();
    expect(ssl('sslmode=disable')).toBeUndefined();
    expect(ssl('sslmode=allow')).toBeUndefined();
    expect(ssl('sslmode=prefer')).toEqual({ rejectUnauthorized: false });
    expect(ssl('sslmode=require')).toEqual({ rejectUnauthorized: false });
    const requireWithCa = ssl(`sslmode=require&sslrootcert=${ca}`) as {
      rejectUnauthorized: boolean;
      ca: string;
      checkServerIdentity?: unknown;
    };
    expect(requireWithCa).toMatchObject({ rejectUnauthorized: true, ca: readFileSync(ca, 'utf8') });
    expect(typeof requireWithCa.checkServerIdentity).toBe('function');
    const full = ssl(`sslmode=verify-full&sslrootcert=${ca}`) as { rejectUnauthorized: boolean; checkServerIdentity?: unknown };
    expect(full).toMatchObject({ rejectUnauthorized: true });
    expect(full.checkServerIdentity).toBeUndefined();
    const system = ssl('sslrootcert=system') as { rejectUnauthorized: boolean; ca?: unknown; checkServerIdentity?: unknown };
    expect(system).toEqual({ rejectUnauthorized: true });
    expect(poolConfigFromUrl(`postgresql://u:p@db.example:5432/db?sslmode=require&application_name=x`).connectionString).toBe(
      'postgresql://u:p@db.example:5432/db?application_name=x',
    );
  });

  it('the edge refuses INGEST_PORT=0 with more than one process (each would get a port of its own)', () => {
    const res = spawnSync(path.join(root, 'node_modules/.bin/tsx'), [path.join(root, 'services/ingest-edge/src/main.ts')], {
      env: { PATH: process.env.PATH, ...goodEnv, INGEST_PORT: '0', EDGE_PROCESSES: '2' },
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(res.status).toBe(1);
    expect(res.stderr.trim()).toBe(
      'ingest-edge: invalid environment: INGEST_PORT: 0 (any free port) works only with EDGE_PROCESSES=1, not 2: each process would listen on a port of its own',
    );
  });

  it('stops a service at start-up with one clear line', () => {
    const res = spawnSync(path.join(root, 'node_modules/.bin/tsx'), [path.join(root, 'services/ingest-edge/src/main.ts')], {
      env: { PATH: process.env.PATH, ...goodEnv, INGEST_PORT: '99999' },
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(res.status).toBe(1);
    const lines = res.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^ingest-edge: invalid environment: INGEST_PORT: expected a port 0-65535/);
  });
});

describe('MAX_BODY_BYTES, read by the edge and (as a fallback) by the admin service', () => {
  const MiB = 1024 * 1024;
  const adminCap = (env: Record<string, string>) => readAdminConfig({ ...goodEnv, ...env }).ADMIN_MAX_BODY_BYTES;

  it("an edge cap above the admin service's 512 MiB no longer stops it (npm start gives every service one environment)", () => {
    expect(readEdgeConfig({ ...goodEnv, MAX_BODY_BYTES: String(1024 * MiB) }).MAX_BODY_BYTES).toBe(1024 * MiB);
    expect(adminCap({ MAX_BODY_BYTES: String(1024 * MiB) })).toBe(512 * MiB);
  });

  it('ADMIN_MAX_BODY_BYTES sets the bulk-import limit alone; unset, MAX_BODY_BYTES does as before, and then 32 MiB', () => {
    expect(adminCap({})).toBe(32 * MiB);
    expect(adminCap({ MAX_BODY_BYTES: String(2 * MiB) })).toBe(2 * MiB);
    expect(adminCap({ MAX_BODY_BYTES: String(256 * MiB), ADMIN_MAX_BODY_BYTES: String(MiB) })).toBe(MiB);
    expect(adminCap({ ADMIN_MAX_BODY_BYTES: '', MAX_BODY_BYTES: '' })).toBe(32 * MiB);
    expect(() => adminCap({ ADMIN_MAX_BODY_BYTES: String(513 * MiB) })).toThrowError(
      /^invalid environment: ADMIN_MAX_BODY_BYTES: expected at most 536870912/,
    );
    expect(() => adminCap({ MAX_BODY_BYTES: '100' })).toThrowError(
      /^invalid environment: MAX_BODY_BYTES: expected at least 1024/,
    );
  });
});

describe('ENCRYPTION_KEY at start-up', () => {
  const runMain = (service: string, env: Record<string, string>) =>
    spawnSync(path.join(root, 'node_modules/.bin/tsx'), [path.join(root, `services/${service}/src/main.ts`)], {
      env: { PATH: process.env.PATH, ...goodEnv, ...env },
      encoding: 'utf8',
      timeout: 30_000,
    });

  it('is checked by the config schema with the parser the services use, in one line (a plain key is not called "k1")', () => {
    const config = (key: string) => readAdminConfig({ ...goodEnv, ENCRYPTION_KEY: key });
    const prefix = 'invalid environment: ENCRYPTION_KEY: ';
    expect(() => config('abc')).toThrowError(
      `${prefix}the key must be 32 bytes base64-encoded (it decodes to 2 bytes) (got "[redacted]")`,
    );
    expect(() => config(Buffer.alloc(16, 1).toString('base64'))).toThrowError(
      /^invalid environment: ENCRYPTION_KEY: the key must be 32 bytes base64-encoded \(it decodes to 16 bytes\)/,
    );
    expect(() => config('k1:abc')).toThrowError(
      `${prefix}key "k1" must be 32 bytes base64-encoded (it decodes to 2 bytes) (got "[redacted]")`,
    );
    expect(() =>
      readEdgeConfig({ ...goodEnv, ENCRYPTION_KEY: `${goodEnv.ENCRYPTION_KEY},${goodEnv.ENCRYPTION_KEY}` }),
    ).toThrowError(
      `${prefix}give every key an id when listing several, e.g. k2:<new key>,k1:<old key> (a single key without an id is k1) (got "[redacted]")`,
    );
    expect(() => config('')).toThrowError(`${prefix}must be set (base64 of 32 random bytes) (got "[redacted]")`);
    expect(config(`k2:${goodEnv.ENCRYPTION_KEY},k1:${goodEnv.ENCRYPTION_KEY}`).ENCRYPTION_KEY).toContain('k2:');
  });

  it('a bad key stops the admin service and the edge with one line, not a stack', () => {
    for (const service of ['admin-api', 'ingest-edge']) {
      const res = runMain(service, { ENCRYPTION_KEY: 'k1:abc', ADMIN_PORT: '0', INGEST_PORT: '0', EDGE_PROCESSES: '1' });
      expect(res.status, res.stderr).toBe(1);
      expect(res.stderr.trim()).toBe(
        `${service}: invalid environment: ENCRYPTION_KEY: key "k1" must be 32 bytes base64-encoded (it decodes to 2 bytes) (got "[redacted]")`,
      );
    }
  });
});

describe('JWT_SECRET keyring at start-up', () => {
  const prefix = 'invalid environment: JWT_SECRET: ';
  const [oldSecret, newSecret] = ['o'.repeat(40), 'n'.repeat(40)];
  const config = (secret: string) => readEdgeConfig({ ...goodEnv, JWT_SECRET: secret });

  it('accepts one secret (k1) or id:secret,… with the first signing, as @pga/tokens reads it', () => {
    expect(config(oldSecret).JWT_SECRET).toBe(oldSecret);
    expect(createCollectorTokens({ secret: oldSecret, issuer: 'i', audience: 'a' })).toMatchObject({
      activeKeyId: 'k1',
      keyIds: ['k1'],
    });
    const rotated = `k2:${newSecret}, k1:${oldSecret}`;
    expect(config(rotated).JWT_SECRET).toBe(rotated);
    expect(createCollectorTokens({ secret: rotated, issuer: 'i', audience: 'a' })).toMatchObject({
      activeKeyId: 'k2',
      keyIds: ['k2', 'k1'],
    });
  });

  it('uses each secret byte for byte, as before key ids: a trailing newline stays part of the key', async () => {
    const withNewline = `${oldSecret}\n`;
    // one secret: the whole value, untouched (also spaces around it)
    for (const secret of [withNewline, ` ${oldSecret} `]) {
      const { keyring, activeKeyId } = parseJwtSecret(secret);
      expect([activeKeyId, keyring.get('k1')?.toString()]).toEqual(['k1', secret]);
    }
    // in a list: spaces before an id are dropped, the secret after the ":" is kept as written
    const { keyring } = parseJwtSecret(`k2:${newSecret}, k1:${withNewline}`);
    expect([...keyring].map(([id, key]) => [id, key.toString()])).toEqual([
      ['k2', newSecret],
      ['k1', withNewline],
    ]);
    expect(config(withNewline).JWT_SECRET).toBe(withNewline);
    // a token signed as before key ids (no kid, the raw bytes) verifies with both
    const collectorId = crypto.randomUUID();
    const legacy = await new SignJWT({ type: 'collector', collector_id: collectorId })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject(collectorId)
      .setIssuer('i')
      .setAudience('a')
      .setIssuedAt()
      .setExpirationTime('1h')
      .setJti(crypto.randomUUID())
      .sign(new TextEncoder().encode(withNewline));
    for (const secret of [withNewline, `k2:${newSecret},k1:${withNewline}`])
      expect((await createCollectorTokens({ secret, issuer: 'i', audience: 'a' }).verifyWithKeyId(legacy)).keyId).toBe('k1');
  });

  it('refuses a short secret, an id given twice, a key without an id in a list and a bad id, in one line each', () => {
    const rotationForm = 'e.g. k2:<new secret>,k1:<old secret> (a single secret without an id is k1)';
    const singleHint =
      ' A single secret containing ":" reads as <id>:<secret>; to use the whole value as one secret, as before key ids, write k1:<it>';
    for (const [secret, problem] of [
      // as before key ids
      ['short-secret-value', 'must be at least 32 characters'],
      [`k2:${'n'.repeat(20)},k1:${oldSecret}`, 'secret "k2" must be at least 32 bytes (it has 20)'],
      [`k1:${newSecret},k1:${oldSecret}`, `key id "k1" is given twice: give every secret an id of its own, ${rotationForm}`],
      [`k2:${newSecret},${oldSecret}`, `give every secret an id when listing several, ${rotationForm}`],
      [`${newSecret},${oldSecret}`, `give every secret an id when listing several, ${rotationForm}`],
      [`k2:${newSecret},new key:${oldSecret}`, 'key id "new key" must be 1-32 letters, digits, _ or -'],
      [`k2:${newSecret},,k1:${oldSecret}`, `an entry is empty (two commas in a row, or one at an end): ${rotationForm}`],
      // One value with a ":" reads as <id>:<secret>: its text before the ":" (which may be a piece of
      // a secret of before key ids) is not echoed, and the line says how to keep it as one secret.
      [`new key:${newSecret}`, `the text before the first ":" is no key id (1-32 letters, digits, _ or -).${singleHint}`],
      [`prod:${'p'.repeat(30)}`, `secret "prod" must be at least 32 bytes (it has 30).${singleHint}`],
    ] as const) {
      expect(() => config(secret)).toThrowError(`${prefix}${problem} (got "[redacted]")`);
      expect(() => readAdminConfig({ ...goodEnv, JWT_SECRET: secret })).toThrowError(`${prefix}${problem}`);
    }
    expect(() => createCollectorTokens({ secret: `k1:${newSecret},k1:${oldSecret}`, issuer: 'i', audience: 'a' })).toThrowError(
      /^JWT_SECRET: key id "k1" is given twice/,
    );
  });

  it('a bad keyring stops the admin service and the edge with one line, not a stack', () => {
    for (const service of ['admin-api', 'ingest-edge']) {
      const res = spawnSync(path.join(root, 'node_modules/.bin/tsx'), [path.join(root, `services/${service}/src/main.ts`)], {
        env: {
          PATH: process.env.PATH,
          ...goodEnv,
          JWT_SECRET: `k2:${'n'.repeat(31)},k1:${oldSecret}`,
          ADMIN_PORT: '0',
          INGEST_PORT: '0',
          EDGE_PROCESSES: '1',
        },
        encoding: 'utf8',
        timeout: 30_000,
      });
      expect(res.status, res.stderr).toBe(1);
      expect(res.stderr.trim()).toBe(
        `${service}: invalid environment: JWT_SECRET: secret "k2" must be at least 32 bytes (it has 31) (got "[redacted]")`,
      );
    }
  });
});

describe('portAvailable (the edge and npm start check their ports with it)', () => {
  it('true for a free port, false for one in use, and an error naming the cause for an address this host lacks', async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const taken = (server.address() as AddressInfo).port;
    try {
      expect(await portAvailable('127.0.0.1', taken)).toBe(false);
      server.close();
      await new Promise((resolve) => server.once('close', resolve));
      expect(await portAvailable('127.0.0.1', taken)).toBe(true);
      // Not "in use": a bad INGEST_HOST must not be reported as a taken port.
      await expect(portAvailable('192.0.2.1', taken)).rejects.toThrow(`cannot listen on 192.0.2.1:${taken}: EADDRNOTAVAIL`);
    } finally {
      server.close();
    }
  });
});
