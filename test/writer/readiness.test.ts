import net from 'node:net';
import { createPool, type Pool, type PoolClient } from '@pga/db';
import { expect, it } from 'vitest';
import { createPgProbe } from '../../services/writer/src/pg-probe';
import { createTestDatabase } from '../helpers';
import { ownPostgres, startWriterHarness, waitUntil } from './helpers';

const readyz = async (url: string) => {
  const res = await fetch(`${url}/readyz`);
  return { status: res.status, body: (await res.json()) as { status: string; reason?: string } };
};

/**
 * Readiness pings PostgreSQL on a connection of its own (services/writer/src/pg-probe.ts): every
 * pooled connection held by statements waiting on a lock is a busy writer, not a PostgreSQL away,
 * and a stopped PostgreSQL still reads as unreachable.
 */
it('stays ready while every pooled connection waits on a lock, and reads a stopped PostgreSQL as unreachable', async () => {
  const pg = await ownPostgres('readiness');
  const h = await startWriterHarness(pg.url, { WRITER_PG_POOL_SIZE: '2', WRITER_HEARTBEAT_FLUSH_MS: '60000' });
  h.pool.on('error', () => undefined);
  const locker = createPool(pg.url, { max: 1 });
  locker.on('error', () => undefined);
  let lockHolder: PoolClient | undefined;
  try {
    expect(await readyz(h.url)).toEqual({ status: 200, body: { status: 'ready' } });

    // A lock every statement below waits for, then as many of them as the writer's pool holds.
    lockHolder = await locker.connect();
    await lockHolder.query('BEGIN');
    await lockHolder.query('LOCK TABLE collectors IN ACCESS EXCLUSIVE MODE');
    const stuck = Array.from({ length: 2 }, () => h.writer.pool.query('SELECT count(*) FROM collectors'));
    await waitUntil('the pool all held', async () => h.writer.pool.totalCount === 2 && h.writer.pool.idleCount === 0);
    await waitUntil(
      'both waiting on the lock',
      async () =>
        (
          await h.pool.query<{ n: number }>(
            "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'pga-writer' AND wait_event_type = 'Lock'",
          )
        ).rows[0]!.n === 2,
    );
    // A pooled SELECT 1 would queue behind them: the old check said "postgresql unreachable".
    const held = await readyz(h.url);
    expect(held).toEqual({ status: 200, body: { status: 'ready' } });
    const text = await (await fetch(`${h.url}/metrics`)).text();
    expect(text).toMatch(/^writer_ready 1$/m);
    expect(text).toMatch(/^writer_not_ready_reason\{reason="postgresql unreachable"\} 0$/m);
    lockHolder.release(true); // its transaction, and the lock, end with the connection
    lockHolder = undefined;
    await Promise.all(stuck);

    await pg.stop();
    await waitUntil('readyz: PostgreSQL away', async () => (await readyz(h.url)).status === 503, 10_000, 100);
    expect((await readyz(h.url)).body).toEqual({ status: 'unavailable', reason: 'postgresql unreachable' });
    expect(await (await fetch(`${h.url}/metrics`)).text()).toMatch(
      /^writer_not_ready_reason\{reason="postgresql unreachable"\} 1$/m,
    );

    // Back: the probe opens a new connection (its old one was cut off by the shutdown).
    await pg.restart();
    await waitUntil('ready again', async () => (await readyz(h.url)).status === 200, 15_000, 100);
  } finally {
    lockHolder?.release(true);
    await h.close();
    await locker.end().catch(() => undefined);
    await pg.stop().catch(() => undefined);
  }
});

it('the probe gives up on a silent server within its timeout and opens a new connection for the next ping', async () => {
  // Accepts TCP connections and never says a word: a frozen PostgreSQL, or a half-open socket.
  const sockets: net.Socket[] = [];
  const server = net.createServer((s) => void sockets.push(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as net.AddressInfo;
  const probe = createPgProbe(`postgresql://u:p@127.0.0.1:${port}/db`, { timeoutMs: 300 });
  try {
    for (const n of [1, 2]) {
      const t0 = Date.now();
      await expect(probe.ping()).rejects.toThrow(/within 300 ms|timeout/i);
      expect(Date.now() - t0).toBeLessThan(1500);
      expect(sockets).toHaveLength(n);
    }
  } finally {
    await probe.close();
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
  }
});

const probes = async (admin: Pool) =>
  (await admin.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'pga-probe-test'"))
    .rows[0]!.n;

it('the probe answers on a real PostgreSQL and reconnects after its connection is terminated', async () => {
  const db = await createTestDatabase();
  const admin = createPool(db.url, { max: 1 });
  const probe = createPgProbe(db.url, { timeoutMs: 2000, applicationName: 'pga-probe-test' });
  try {
    await probe.ping();
    expect(await probes(admin)).toBe(1);
    await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pga-probe-test'");
    await waitUntil('the probe backend gone', async () => (await probes(admin)) === 0);
    // The ping right after may go out on the closed connection (its FATAL not yet read, then read as
    // that query's error): it fails and drops it, and the next opens a new one (it used to fail
    // again, on the same connection, with ECONNRESET).
    const results: string[] = [];
    for (let i = 0; i < 3; i++)
      results.push(
        await probe.ping().then(
          () => 'ok',
          (err: unknown) => String(err),
        ),
      );
    expect(results.slice(1), results.join('; ')).toEqual(['ok', 'ok']);
    expect(await probes(admin)).toBe(1);
  } finally {
    await probe.close();
    await admin.end();
    await db.drop();
  }
});
