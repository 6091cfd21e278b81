import { chmodSync, existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import pg from 'pg';
import { alive, freshGet, processTree } from '@pga/local-stack';
import { createTestDatabase, launchBrowser, startStack, testEnv } from '../helpers';

const healthy = async (url: string) => (await fetch(`${url}/healthz`)).status;
const refused = async (url: string) =>
  fetch(`${url}/healthz`).then(
    () => false,
    () => true,
  );

/** Redis's first answer line to `commands` (inline, on a fresh connection). */
const redisSays = (port: number, ...commands: string[]) =>
  new Promise<string>((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let data = '';
    socket.once('connect', () => socket.write(commands.map((c) => `${c}\r\n`).join('')));
    socket.on('data', (chunk) => {
      data += chunk.toString();
      const lines = data.split('\r\n');
      if (lines.length > commands.length) {
        socket.destroy();
        resolve(lines[commands.length - 1]!);
      }
    });
    socket.once('error', reject);
  });

/**
 * The local Redis asks for the password kept in secrets.json (security review M4: without one any
 * local user could PUBLISH a forged "enabled" change or FLUSHALL); the services were given it (the
 * stack is ready, so they reached Redis).
 */
const expectRedisLocked = async (dataDir: string): Promise<string> => {
  const secretsFile = path.join(dataDir, 'secrets.json');
  expect(statSync(secretsFile).mode & 0o777).toBe(0o600);
  const password = (JSON.parse(readFileSync(secretsFile, 'utf8')) as { REDIS_PASSWORD?: string }).REDIS_PASSWORD;
  expect(password).toMatch(/^[A-Za-z0-9_-]{32}$/);
  const { redis: port } = JSON.parse(readFileSync(path.join(dataDir, 'ports.json'), 'utf8')) as { redis: number };
  expect(await redisSays(port, 'PING')).toMatch(/^-NOAUTH/);
  expect(await redisSays(port, 'PUBLISH pga:collector-changes x')).toMatch(/^-NOAUTH/);
  expect(await redisSays(port, `AUTH ${password}`, 'PING')).toBe('+PONG');
  return password!;
};

describe('npm start (scripts/start.ts)', () => {
  // Starting three services (each compiling TypeScript at start) plus initdb takes a while on 2 busy cores.
  it(
    'brings up PostgreSQL, Redis and every service on the embedded default, serves the UI, and stops on Ctrl-C',
    { timeout: 400_000 },
    async () => {
      const dataDir = mkdtempSync(path.join(testEnv.dataDir, 'stack-'));
      chmodSync(dataDir, 0o755); // reachable by the postgres account when the tests run as root
      const stack = await startStack({ DATA_DIR: dataDir });
      let shutdownFrom: number;
      let firstPassword: string | undefined;
      try {
        expect(stack.output()).toMatch(/First admin\s+admin \/ \S{12,}/);
        expect(await healthy(stack.adminUrl)).toBe(200);
        expect(await healthy(stack.ingestUrl)).toBe(200);
        expect(await healthy(stack.writerUrl)).toBe(200);
        // "Running" means usable: the writer and every edge process (fresh connections reach each) ready.
        expect((await fetch(`${stack.writerUrl}/readyz`)).status).toBe(200);
        firstPassword = await expectRedisLocked(dataDir);
        const edgePort = Number(new URL(stack.ingestUrl).port);
        const ready = await Promise.all(Array.from({ length: 16 }, () => freshGet(edgePort, '/readyz')));
        expect(ready.map((r) => r.status)).toEqual(Array(16).fill(200));

        await using browser = await launchBrowser();
        const page = await browser.newPage();
        await page.goto(stack.adminUrl);
        await expect.poll(() => page.getByRole('heading', { level: 1 }).textContent()).toBe('pgAnalytics Central');
        await expect.poll(() => page.getByTestId('health').textContent()).toBe('healthy');
      } finally {
        shutdownFrom = stack.output().length;
        expect(await stack.stop()).toBe(0);
      }
      // Ctrl-C reaches the script and its services: they drain while PostgreSQL and Redis are still
      // up (stopped after them), so the shutdown logs no warning or error (LOG_LEVEL=warn), and it
      // ends with nothing it started left running.
      expect(stack.output().slice(shutdownFrom)).not.toMatch(/"level":[456]0/);
      expect(stack.stoppedTree.length).toBeGreaterThanOrEqual(6); // script, 3 services (the edge forks), PostgreSQL, Redis
      expect(stack.stoppedTree.filter(alive)).toEqual([]);
      // Everything it started is gone, ports closed.
      expect(await refused(stack.adminUrl)).toBe(true);
      expect(await refused(stack.ingestUrl)).toBe(true);

      // Second run reuses the cluster: the admin exists, no new password is printed. This one ends
      // with its terminal closed (SIGHUP): that too stops PostgreSQL and Redis.
      // A secrets.json from before the Redis password (an earlier version's) gains one; the others stay.
      const secretsFile = path.join(dataDir, 'secrets.json');
      const { REDIS_PASSWORD: _dropped, ...older } = JSON.parse(readFileSync(secretsFile, 'utf8')) as Record<string, string>;
      writeFileSync(secretsFile, JSON.stringify(older, null, 2));
      const again = await startStack({ DATA_DIR: dataDir });
      try {
        expect(again.output()).toMatch(/Admin account\s+admin \(already exists\)/);
        expect(await expectRedisLocked(dataDir)).not.toBe(firstPassword);
        expect(JSON.parse(readFileSync(secretsFile, 'utf8'))).toMatchObject(older);
      } finally {
        expect(await again.stop('SIGHUP')).toBe(0);
      }
      expect(again.stoppedTree.filter(alive)).toEqual([]);
    },
  );

  it(
    'uses DATABASE_URL and REDIS_URL instead of local servers, applying migrations and ADMIN_PASSWORD',
    { timeout: 200_000 },
    async () => {
      await using db = await createTestDatabase({ migrated: false });
      const dataDir = mkdtempSync(path.join(testEnv.dataDir, 'ext-'));
      const stack = await startStack({
        DATA_DIR: dataDir,
        DATABASE_URL: db.url,
        REDIS_URL: testEnv.redisUrl,
        ADMIN_USERNAME: 'ops',
        ADMIN_PASSWORD: 'correct horse battery',
      });
      try {
        expect(stack.output()).toMatch(/First admin\s+ops \(password from ADMIN_PASSWORD\)/);
        expect(existsSync(path.join(dataDir, 'postgres'))).toBe(false);
        expect(existsSync(path.join(dataDir, 'redis'))).toBe(false);
        expect(await healthy(stack.ingestUrl)).toBe(200);
        const client = new pg.Client({ connectionString: db.url });
        await client.connect();
        const { rows } = await client.query("SELECT username, role FROM users WHERE username = 'ops'");
        await client.end();
        expect(rows).toEqual([{ username: 'ops', role: 'admin' }]);

        // A service that crashes while the system runs is started again; the others keep running.
        const writerPid = () =>
          processTree(stack.child.pid!).find((p) =>
            readFileSync(`/proc/${p.pid}/cmdline`, 'latin1').includes('writer/dist/main.mjs'),
          )?.pid;
        const crashed = writerPid()!;
        expect(crashed).toBeGreaterThan(0);
        process.kill(crashed, 'SIGKILL');
        await expect
          .poll(() => stack.output(), { timeout: 10_000 })
          .toMatch(/"service":"writer".*service exited unexpectedly; starting it again/);
        expect(await healthy(stack.ingestUrl)).toBe(200);
        await expect
          .poll(
            () =>
              fetch(`${stack.writerUrl}/readyz`).then(
                (r) => r.status,
                () => 0,
              ),
            { timeout: 60_000, interval: 250 },
          )
          .toBe(200);
        expect(writerPid()).not.toBe(crashed);
        expect(stack.child.exitCode).toBeNull();
      } finally {
        expect(await stack.stop()).toBe(0);
      }
    },
  );
});
