import { readdirSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkTokenKeyIdsAtStart, createPool, migrateDatabase, MIGRATIONS_DIR } from '@pga/db';
import { freePort } from '@pga/local-stack';
import { capturingLogger, createTestDatabase, startPgBouncer, testEnv, type PgBouncer } from '../helpers';
import { EdgeWorld, spawnEdge } from '../edge/harness';

/**
 * The system through a real PgBouncer in transaction mode (README "Through a connection pooler"):
 * each transaction may run on another server connection. `server_round_robin = 1` hands a client's
 * consecutive transactions to different server connections whenever more than one is idle, as a busy
 * pool does, instead of PgBouncer's default of the connection used last (which hides state left on a
 * session in a quiet test).
 */
describe('through PgBouncer in transaction mode', () => {
  let bouncer: PgBouncer;
  const files = readdirSync(MIGRATIONS_DIR).filter((f) => /^\d{4}_[a-z0-9_]+\.sql$/.test(f));

  beforeAll(async () => {
    bouncer = await startPgBouncer({
      target: new URL(testEnv.pgUrl),
      poolMode: 'transaction',
      settings: { server_round_robin: '1', default_pool_size: '6' },
    });
  });
  afterAll(async () => {
    await bouncer?.stop();
  });

  /** Opens `n` server connections to the database behind the bouncer (each client holding one at once). */
  async function warm(url: string, n: number): Promise<void> {
    const clients = Array.from({ length: n }, () => new pg.Client({ connectionString: url }));
    await Promise.all(clients.map((c) => c.connect()));
    try {
      await Promise.all(clients.map((c) => c.query('SELECT pg_sleep(0.2)')));
    } finally {
      await Promise.all(clients.map((c) => c.end()));
    }
  }

  /** Advisory locks held (or waited for) in `database`, read on a direct connection. */
  async function advisoryLocks(database: string): Promise<unknown[]> {
    const direct = new pg.Client({ connectionString: testEnv.pgUrl });
    await direct.connect();
    try {
      const { rows } = await direct.query(
        `SELECT l.classid, l.objid, l.granted, a.state
           FROM pg_locks l JOIN pg_stat_activity a USING (pid)
          WHERE l.locktype = 'advisory' AND l.database = (SELECT oid FROM pg_database WHERE datname = $1)`,
        [database],
      );
      return rows;
    } finally {
      await direct.end();
    }
  }

  it("a pool with a statement timeout (the edge's) connects, and keeps its timeout without a pooler", async () => {
    await using db = await createTestDatabase();
    // The edge's pool asked for statement_timeout as a startup parameter of its own, which PgBouncer
    // refuses: "unsupported startup parameter: statement_timeout" for every connection.
    const pooled = createPool(bouncer.url(db.url), { max: 1, statementTimeoutMs: 10_000 });
    const direct = createPool(db.url, { max: 1, statementTimeoutMs: 10_000 });
    try {
      expect((await pooled.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
      expect((await pooled.query('SHOW DateStyle')).rows[0].DateStyle).toMatch(/^ISO/);
      expect((await direct.query('SHOW statement_timeout')).rows[0].statement_timeout).toBe('10s');
      expect((await direct.query('SHOW DateStyle')).rows[0].DateStyle).toMatch(/^ISO/);
    } finally {
      await pooled.end();
      await direct.end();
    }
  });

  it("the edge's start says once that the pooler dropped its statement timeout (options ignored), and nothing without a pooler", async () => {
    const jwt = { keyIds: ['k1'], activeKeyId: 'k1' };
    const warnings = async (url: string) => {
      const { logger, lines } = capturingLogger('edge-test');
      expect(await checkTokenKeyIdsAtStart(url, jwt, logger, { timeoutMs: 5000, statementTimeoutMs: 10_000 })).toBeUndefined();
      return lines.filter((l) => l.level >= 40).map((l) => l.msg);
    };
    await using db = await createTestDatabase();
    // Through PgBouncer the connection has the server's statement_timeout (0), silently.
    expect(await warnings(bouncer.url(db.url))).toEqual([
      "statement_timeout is 0 (none) on this service's PostgreSQL connections, not the 10s it asks for in the options startup parameter: " +
        'a connection pooler in between (PgBouncer with ignore_startup_parameters = options) dropped the parameter, so its statements run ' +
        "without that limit. To have one anyway: PgBouncer's query_timeout, or ALTER ROLE postgres SET statement_timeout = '10s' " +
        '(new server connections take it) (README "Through a connection pooler")',
    ]);
    expect(await warnings(db.url)).toEqual([]);
    // The advice followed (here for one database, not the role: the cluster is shared): no warning.
    await using set = await createTestDatabase();
    const admin = new pg.Client({ connectionString: testEnv.pgUrl });
    await admin.connect();
    try {
      await admin.query(`ALTER DATABASE ${set.name} SET statement_timeout = '10s'`);
    } finally {
      await admin.end();
    }
    expect(await warnings(bouncer.url(set.url))).toEqual([]);

    // The real edge's start (services/ingest-edge/src/main.ts): the warning once, and it serves.
    await using world = await EdgeWorld.create();
    const said = async (url: string) => {
      await using edge = await spawnEdge(world.env({ DATABASE_URL: url, LOG_LEVEL: 'warn' }));
      expect((await fetch(`${edge.url}/readyz`)).status).toBe(200);
      return edge
        .output()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => (JSON.parse(l) as { msg: string }).msg)
        .filter((m) => m.startsWith('statement_timeout '));
    };
    expect(await said(bouncer.url(world.db.url))).toEqual([
      expect.stringMatching(/^statement_timeout is 0 \(none\) on this service's/),
    ]);
    expect(await said(world.db.url)).toEqual([]);
  }, 60_000);

  it('npm run migrate (migrateDatabase) leaves no advisory lock held on a server connection', async () => {
    await using db = await createTestDatabase({ migrated: false });
    const url = bouncer.url(db.url);
    await warm(url, 3);
    const first = await migrateDatabase(url);
    expect(first.applied).toHaveLength(files.length);
    // The old runner's session lock was taken on one server connection and "released" on another
    // (pg_advisory_unlock answering false): held on the first until PgBouncer closed it.
    expect(await advisoryLocks(db.name)).toEqual([]);
    const again = await migrateDatabase(url);
    expect(again).toEqual({ applied: [], alreadyApplied: files.length });
    expect(await advisoryLocks(db.name)).toEqual([]);
  });

  it('starters migrating at once apply each file once, in order', async () => {
    await using db = await createTestDatabase({ migrated: false });
    const url = bouncer.url(db.url);
    await warm(url, 4);
    const results = await Promise.allSettled([migrateDatabase(url), migrateDatabase(url), migrateDatabase(url)]);
    expect(results.map((r) => (r.status === 'rejected' ? String(r.reason) : 'ok'))).toEqual(['ok', 'ok', 'ok']);
    const applied = results.flatMap((r) => (r.status === 'fulfilled' ? r.value.applied : []));
    expect(applied.sort()).toEqual([...files].sort());
    const direct = new pg.Client({ connectionString: db.url });
    await direct.connect();
    try {
      const { rows } = await direct.query<{ version: string }>(
        'SELECT version FROM schema_migrations ORDER BY applied_at, version',
      );
      expect(rows.map((r) => r.version)).toEqual([...files].sort());
    } finally {
      await direct.end();
    }
    expect(await advisoryLocks(db.name)).toEqual([]);
    // The old runner waited here for ever: a starter's lock left on a server connection.
  }, 20_000);
});

/**
 * The helper's own port handling: a PgBouncer whose port another process holds exits "Address already
 * in use"; readiness used to be any TCP connect, so the start could pass on the holder's socket and
 * hand out a URL that reached no PgBouncer. Now it waits for PgBouncer's "listening on" line and
 * starts again on another port.
 */
it('the PgBouncer helper starts on another port when its port is taken, never on the holder', { timeout: 60_000 }, async () => {
  const holder = createServer((socket) => socket.destroy());
  await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
  const held = (holder.address() as AddressInfo).port;
  const picked: number[] = [];
  let bouncer: PgBouncer | undefined;
  try {
    bouncer = await startPgBouncer({
      target: new URL(testEnv.pgUrl),
      poolMode: 'session',
      pickPort: async () => {
        const port = picked.length === 0 ? held : await freePort();
        picked.push(port);
        return port;
      },
    });
    expect(picked).toHaveLength(2);
    expect(bouncer.port).toBe(picked[1]);
    const client = new pg.Client({ connectionString: bouncer.url(testEnv.pgUrl) });
    await client.connect();
    try {
      expect((await client.query<{ one: number }>('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    } finally {
      await client.end();
    }
  } finally {
    await bouncer?.stop();
    holder.close();
  }
});
