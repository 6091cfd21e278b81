import { spawn } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expect, it, vi } from 'vitest';
import { freePort } from '@pga/local-stack';
import { createTestDatabase, testEnv, uniquePrefix } from '../helpers';

const root = path.resolve(import.meta.dirname, '../..');

/**
 * The admin service's start (main.ts) checks PostgreSQL's DateStyle once: migrateDatabase refuses a
 * non-ISO one, and the token-key check that follows on the same DATABASE_URL does not ask again
 * (it asked a second time until now). Counted in the real process by a preload that wraps pg.
 */
it('the admin service asks PostgreSQL for its DateStyle once a start', { timeout: 90_000 }, async () => {
  await using db = await createTestDatabase();
  const dir = mkdtempSync(path.join(tmpdir(), 'pga-date-style-'));
  const countFile = path.join(dir, 'count');
  const port = await freePort();
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', '--import', path.join(import.meta.dirname, 'count-date-style.ts'), 'services/admin-api/src/main.ts'],
    {
      cwd: root,
      env: {
        PATH: process.env.PATH ?? '',
        COUNT_DATE_STYLE_FILE: countFile,
        DATABASE_URL: db.url,
        REDIS_URL: testEnv.redisUrl,
        REDIS_KEY_PREFIX: uniquePrefix('date-style'),
        JWT_SECRET: randomBytes(40).toString('base64url'),
        ENCRYPTION_KEY: `k1:${randomBytes(32).toString('base64')}`,
        ADMIN_PORT: String(port),
        ADMIN_HOST: '127.0.0.1',
        LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d));
  child.stderr.on('data', (d: Buffer) => (out += d));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  try {
    await vi.waitFor(
      async () => {
        if (child.exitCode !== null) throw new Error(`admin service exited ${child.exitCode}:\n${out}`);
        expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
      },
      { timeout: 60_000, interval: 200 },
    );
    expect(readFileSync(countFile, 'utf8').trim().split('\n')).toEqual(['SHOW DateStyle']);
  } finally {
    if (child.exitCode === null) process.kill(child.pid!, 'SIGTERM');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A port another program holds stops the start with one fatal line naming it, not a stack. */
it('the admin service says once, without a stack, that its port is in use', { timeout: 90_000 }, async () => {
  await using db = await createTestDatabase();
  const holder = createServer();
  await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
  const port = (holder.address() as AddressInfo).port;
  try {
    const child = spawn(process.execPath, ['--import', 'tsx', 'services/admin-api/src/main.ts'], {
      cwd: root,
      env: {
        PATH: process.env.PATH ?? '',
        DATABASE_URL: db.url,
        REDIS_URL: testEnv.redisUrl,
        REDIS_KEY_PREFIX: uniquePrefix('port-in-use'),
        JWT_SECRET: randomBytes(40).toString('base64url'),
        ENCRYPTION_KEY: `k1:${randomBytes(32).toString('base64')}`,
        ADMIN_PORT: String(port),
        ADMIN_HOST: '127.0.0.1',
        LOG_LEVEL: 'info',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    child.stderr.on('data', (d: Buffer) => (out += d));
    const code = await new Promise((resolve) => child.once('exit', resolve));
    expect(code).toBe(1);
    const fatal = out
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as { level: number; msg: string; port?: number })
      .filter((line) => line.level === 60);
    expect(fatal).toEqual([
      expect.objectContaining({
        port,
        msg: `cannot listen: port ${port} on 127.0.0.1 is in use (another admin service or program); set ADMIN_PORT`,
      }),
    ]);
    expect(out).not.toMatch(/^\s+at /m);
  } finally {
    holder.close();
  }
});
