import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  checkTokenKeyIdsAtStart,
  createPool,
  dateStyleRefusal,
  isTransientPgError,
  migrateDatabase,
  pgErrorKind,
  runMigrations,
  withTransaction,
  type Pool,
  type PoolClient,
} from '@pga/db';
import { createLogger } from '@pga/logger';
import { createTestDatabase, optionsDroppingProxy, type OptionsDroppingProxy, type TestDatabase } from '../helpers';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The server ends a connection (pg_terminate_backend here; a restart or a failover in production)
 * while a client is checked out of the pool. pg-pool listens for a client's 'error' only while it is
 * idle, so without a listener of our own the client's 'error' event is an uncaught exception: the
 * process exits. What a caller must see instead is a rejected promise, and a pool that still works.
 */
describe('@pga/db: a PostgreSQL connection lost while a client is checked out', () => {
  let db: TestDatabase;
  let pool: Pool;
  let admin: Pool;
  // Where a service would exit, vitest catches the exception and reports it after the run: recorded
  // here too, so that the test itself fails.
  const uncaught: string[] = [];
  const record = (err: unknown) => uncaught.push(String(err));

  beforeAll(async () => {
    process.on('uncaughtException', record);
    db = await createTestDatabase();
    pool = createPool(db.url, { max: 2, applicationName: 'pga-lost-connection-test' });
    admin = createPool(db.url, { max: 1 });
  });
  beforeEach(() => {
    uncaught.length = 0;
  });
  afterAll(async () => {
    process.off('uncaughtException', record);
    await pool?.end();
    await admin?.end();
    await db?.drop();
  });

  const terminate = (pid: number) => admin.query('SELECT pg_terminate_backend($1)', [pid]);
  const pidOf = async (client: PoolClient) =>
    (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;

  it('withTransaction rejects when the backend is terminated while its fn awaits, and the pool goes on', async () => {
    const outcome = withTransaction(pool, async (client) => {
      await client.query('CREATE TEMP TABLE t (x int)');
      await terminate(await pidOf(client));
      // The connection's end arrives while no query runs on it: the client emits 'error'.
      await sleep(300);
      await client.query('INSERT INTO t VALUES (1)');
      return 'committed';
    });
    await expect(outcome).rejects.toThrow();
    expect(uncaught, 'uncaught exceptions (a service would have exited)').toEqual([]);
    const { rows } = await pool.query<{ one: number }>('SELECT 1 AS one');
    expect(rows).toEqual([{ one: 1 }]);
    expect(await withTransaction(pool, async (client) => (await client.query('SELECT 2 AS two')).rows)).toEqual([{ two: 2 }]);
  });

  it('runMigrations rejects when its backend is terminated in the middle of a migration', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'pga-migrations-'));
    const other = await createTestDatabase({ migrated: false });
    const migrating = createPool(other.url, { max: 1, applicationName: 'pga-migrate-test' });
    try {
      await writeFile(path.join(dir, '0001_slow.sql'), 'SELECT pg_sleep(30);\n');
      const outcome = runMigrations(migrating, dir);
      outcome.catch(() => undefined);
      let pid: number | undefined;
      for (let i = 0; i < 100 && pid === undefined; i++) {
        await sleep(50);
        const r = await admin.query<{ pid: number }>(
          `SELECT pid FROM pg_stat_activity WHERE application_name = 'pga-migrate-test' AND query LIKE '%pg_sleep%'`,
        );
        pid = r.rows[0]?.pid;
      }
      expect(pid, 'the migration is running').toBeDefined();
      await terminate(pid!);
      await expect(outcome).rejects.toThrow(/migration 0001_slow\.sql failed/);
      await sleep(100);
      expect(uncaught, 'uncaught exceptions (a service would have exited)').toEqual([]);
      expect((await migrating.query<{ one: number }>('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    } finally {
      await migrating.end();
      await other.drop();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('turns TCP keepalive on for every connection, so a peer gone silent (half-open) is noticed', async () => {
    const client = await pool.connect();
    try {
      const socket = client.connection.stream as Socket;
      const port = socket.localPort!.toString(16).toUpperCase().padStart(4, '0');
      const table = (await readFile('/proc/net/tcp', 'utf8')) + (await readFile('/proc/net/tcp6', 'utf8').catch(() => ''));
      // /proc/net/tcp: "sl local_address rem_address st tx_queue:rx_queue tr:tm->when …"; an idle
      // established socket has timer 00 unless keepalive armed its timer (02).
      const line = table
        .split('\n')
        .map((l) => l.trim().split(/\s+/))
        .find((f) => f[1]?.endsWith(`:${port}`) && f[3] === '01');
      expect(line, `socket of local port ${socket.localPort} in /proc/net/tcp`).toBeDefined();
      const [timer, when] = line![5]!.split(':');
      expect(timer).toBe('02');
      // Armed within the configured idle delay (jiffies, at most 1000 a second).
      expect(Number.parseInt(when!, 16)).toBeLessThanOrEqual(60 * 1000);
    } finally {
      client.release();
    }
  });

  it('logs an idle client losing its connection as one short warning (not the client object pg-pool attaches)', async () => {
    const lines: Record<string, any>[] = [];
    const logger = createLogger({
      name: 'pool-test',
      destination: { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, any>) },
    });
    const watched = createPool(db.url, { max: 1, applicationName: 'pga-idle-error-test', logger });
    try {
      const client = await watched.connect();
      const pid = await pidOf(client);
      client.release(); // idle in the pool: its connection's end is the pool's 'error'
      await terminate(pid);
      await expect.poll(() => lines.length, { timeout: 5000 }).toBeGreaterThan(0);
      const [line] = lines;
      expect(line!.msg).toBe('idle PostgreSQL client error');
      expect(line!.err.message).toMatch(/terminat/i);
      expect(line!.err.code).toBe('57P01'); // admin_shutdown: pg_terminate_backend
      expect(line!.err.type).toBe('DatabaseError');
      expect(line!.err.client, 'the pg client object (connection, parameters, buffers)').toBeUndefined();
      expect(JSON.stringify(line).length).toBeLessThan(1500);
      expect(uncaught).toEqual([]);
      expect((await watched.query<{ one: number }>('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    } finally {
      await watched.end();
    }
  });

  it('a session PostgreSQL closes for idling (idle_session_timeout, 57P05) is transient, of kind timeout, and the pool goes on', async () => {
    const idleErrors: (Error & { code?: string })[] = [];
    const watched = createPool(db.url, {
      max: 1,
      applicationName: 'pga-idle-session-test',
      onIdleError: (e) => idleErrors.push(e),
    });
    try {
      const client = await watched.connect();
      await client.query("SET idle_session_timeout = '200ms'");
      client.release(); // idle in the pool: the server ends the session after 200 ms
      await expect.poll(() => idleErrors.length, { timeout: 5000 }).toBeGreaterThan(0);
      const [err] = idleErrors;
      expect(err!.code).toBe('57P05');
      expect(isTransientPgError(err)).toBe(true);
      expect(pgErrorKind(err)).toBe('timeout');
      expect(uncaught).toEqual([]);
      expect((await watched.query<{ one: number }>('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
      await sleep(300);
      expect(idleErrors.map((e) => e.code ?? e.message)).toEqual(['57P05']);
    } finally {
      await watched.end();
    }
  });
});

/**
 * A server, database or role whose DateStyle is not ISO (an RDS parameter group may set one):
 * node-postgres reads dates and times in ISO only, and read every timestamptz as null.
 */
describe('@pga/db: a database whose DateStyle is not ISO', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
    const admin = createPool(db.url, { max: 1 });
    try {
      await admin.query(`ALTER DATABASE ${db.name} SET DateStyle = 'Postgres, DMY'`);
      await admin.query(`ALTER DATABASE ${db.name} SET TimeZone = 'Asia/Kolkata'`);
    } finally {
      await admin.end();
    }
  });
  afterAll(async () => {
    await db?.drop();
  });

  it("reads timestamptz values as the right Dates, keeping the database's time zone and the URL's own options", async () => {
    const pool = createPool(`${db.url}?options=${encodeURIComponent('-c statement_timeout=1234')}`, { max: 1 });
    try {
      const { rows } = await pool.query<{ t: Date | null; zone: string; timeout: string }>(
        `SELECT '2026-06-10T00:00:00Z'::timestamptz AS t, current_setting('TimeZone') AS zone,
                current_setting('statement_timeout') AS timeout`,
      );
      expect(rows[0]!.t?.toISOString()).toBe('2026-06-10T00:00:00.000Z');
      expect(rows[0]).toMatchObject({ zone: 'Asia/Kolkata', timeout: '1234ms' });
    } finally {
      await pool.end();
    }
  });
});

/**
 * Review 30 item 6: behind a pooler that drops our `options=-c DateStyle=ISO`, a role (database,
 * server) whose DateStyle is not ISO made every time read back null, silently. The services refuse
 * to start then, saying what they found and what to set.
 */
describe('@pga/db: a pooler that drops the DateStyle=ISO startup option', () => {
  let db: TestDatabase;
  let proxy: OptionsDroppingProxy;
  let proxied: string;
  beforeAll(async () => {
    db = await createTestDatabase();
    const admin = createPool(db.url, { max: 1 });
    try {
      await admin.query(`ALTER ROLE CURRENT_USER IN DATABASE ${db.name} SET DateStyle = 'Postgres, DMY'`);
    } finally {
      await admin.end();
    }
    proxy = await optionsDroppingProxy(new URL(db.url));
    proxied = proxy.url(db.url);
  });
  afterAll(async () => {
    await proxy?.close();
    await db?.drop();
  });

  it('the proxy is such a pooler: through it the role’s DateStyle applies and a timestamptz reads as null', async () => {
    const pool = createPool(proxied, { max: 1 });
    try {
      const { rows } = await pool.query<{ t: Date | null; style: string }>(
        `SELECT '2026-06-10T00:00:00Z'::timestamptz AS t, current_setting('DateStyle') AS style`,
      );
      expect(rows[0]).toEqual({ t: null, style: 'Postgres, DMY' });
    } finally {
      await pool.end();
    }
  });

  it('dateStyleRefusal says what it found and what to set; nothing when the option reaches the server', async () => {
    const through = createPool(proxied, { max: 1 });
    const direct = createPool(db.url, { max: 1 });
    try {
      const refusal = await dateStyleRefusal(through);
      expect(refusal).toMatch(/DateStyle on this service's connections is "Postgres, DMY", not ISO/);
      expect(refusal).toMatch(/ignore_startup_parameters/);
      expect(refusal).toMatch(/ALTER ROLE <user> SET DateStyle = 'ISO, MDY'/);
      expect(refusal).not.toMatch(/\n/);
      expect(await dateStyleRefusal(direct)).toBeUndefined();
    } finally {
      await through.end();
      await direct.end();
    }
  });

  it('migrateDatabase (the admin service, the writer, npm run migrate) and checkTokenKeyIdsAtStart (the edge) refuse the start', async () => {
    await expect(migrateDatabase(proxied)).rejects.toThrow(
      new RegExp(`^PostgreSQL at 127\\.0\\.0\\.1:\\d+, database ${db.name}, .*DateStyle .* is "Postgres, DMY", not ISO`),
    );
    const logger = createLogger({ name: 'date-style-test', level: 'silent', pretty: false });
    const jwt = { keyIds: ['k1'], activeKeyId: 'k1' };
    expect(await checkTokenKeyIdsAtStart(proxied, jwt, logger)).toMatch(/is "Postgres, DMY", not ISO/);
    // Directly (the option reaches the server): no refusal.
    await expect(migrateDatabase(db.url)).resolves.toBeDefined();
    expect(await checkTokenKeyIdsAtStart(db.url, jwt, logger)).toBeUndefined();
  });
});
