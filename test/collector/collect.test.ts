import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSnapshotCollector, openTargetConnection, SQL_MARKER, stringifyJson } from '@pga/collector';
import { startTargetPostgres, type TargetPostgres } from './helpers/target-postgres';

const COLLECTOR_ID = '11111111-2222-4333-8444-555555555555';
const PGBENCH_SELECT = 'SELECT abalance FROM pgbench_accounts WHERE aid = $1';

type Query = { queryid: bigint; text: string; calls: bigint; delta: { calls: bigint; total_time: number } | null };
const queryStats = (metrics: Record<string, unknown>[]) =>
  metrics.filter((m) => m.type === 'pg_query_stats').flatMap((m) => m.queries as Query[]);

let target: TargetPostgres;
beforeAll(async () => {
  target = await startTargetPostgres();
});
afterAll(async () => {
  await target?.[Symbol.asyncDispose]();
});

describe('collection against PostgreSQL 15 with pg_stat_statements and pgbench traffic', () => {
  it('reports per-interval deltas and cumulative counters that match pg_stat_statements, queryid exact', async () => {
    const conn = await openTargetConnection({ url: target.url }, { statementTimeoutMs: 5000 });
    try {
      const collector = createSnapshotCollector({ collectorId: COLLECTOR_ID });
      await target.pgbench(['-S', '-c', '2', '-t', '40']);
      const first = await collector.collect(conn, { queryLimit: 50 });
      expect(queryStats(first.envelope.metrics).find((q) => q.text === PGBENCH_SELECT)?.delta).toBeNull();

      await target.pgbench(['-S', '-c', '2', '-t', '75']);
      const second = await collector.collect(conn, { queryLimit: 50 });
      const select = queryStats(second.envelope.metrics).find((q) => q.text === PGBENCH_SELECT);
      expect(select, 'pgbench select is in the top queries').toBeDefined();
      // Exactly the 150 selects pgbench ran between the two collections.
      expect(select!.delta!.calls).toBe(150n);
      expect(select!.delta!.total_time).toBeGreaterThan(0);

      const [truth] = await target.sql<{ queryid: string; calls: string }>(
        `SELECT queryid::text, calls::text FROM pg_stat_statements WHERE query = $1 AND toplevel`,
        [PGBENCH_SELECT],
      );
      expect(select!.calls).toBe(BigInt(truth!.calls));
      expect(select!.queryid).toBe(BigInt(truth!.queryid));

      // In the JSON text every queryid is the exact 64-bit integer, not a rounded double.
      const json = stringifyJson(second.envelope);
      const ids = await target.sql<{ queryid: string }>(`SELECT queryid::text FROM pg_stat_statements`);
      const sent = [...json.matchAll(/"queryid":(-?\d+)/g)].map((m) => m[1]!);
      expect(sent.length).toBeGreaterThan(0);
      for (const id of sent) expect(ids.map((r) => r.queryid)).toContain(id);
      expect(sent.some((id) => Math.abs(Number(id)) > Number.MAX_SAFE_INTEGER)).toBe(true);
      expect(json).toContain(`"queryid":${truth!.queryid}`);
      expect(JSON.parse(json).metrics_count).toBe(second.envelope.metrics.length);
    } finally {
      await conn.close();
    }
  });

  it('honours the query limit and ranks by time spent during the interval', async () => {
    const conn = await openTargetConnection({ url: target.url }, { statementTimeoutMs: 5000 });
    try {
      const collector = createSnapshotCollector({ collectorId: COLLECTOR_ID });
      await collector.collect(conn, { queryLimit: 3 });
      await target.sql('SELECT pg_sleep(0.3), 41 AS slowest_statement');
      const snap = await collector.collect(conn, { queryLimit: 3 });
      const queries = queryStats(snap.envelope.metrics);
      expect(queries.length).toBeLessThanOrEqual(3);
      expect(queries[0]!.text).toContain('slowest_statement');
      // Only statements that ran during the interval are listed once a baseline exists.
      for (const q of queries) expect(q.delta!.calls).toBeGreaterThan(0n);
    } finally {
      await conn.close();
    }
  });

  it('keeps its own statements out of its query stats, as superuser and as a pg_monitor role', async () => {
    await target.sql(
      `DO $$ BEGIN CREATE ROLE monitor LOGIN IN ROLE pg_monitor; EXCEPTION WHEN duplicate_object THEN NULL; END $$`,
    );
    for (const url of [target.url, target.url.replace('postgres@', 'monitor@')]) {
      const conn = await openTargetConnection({ url }, { statementTimeoutMs: 5000 });
      try {
        const collector = createSnapshotCollector({ collectorId: COLLECTOR_ID });
        await collector.collect(conn, { queryLimit: 1000 });
        await target.pgbench(['-S', '-c', '1', '-t', '5']);
        const snap = await collector.collect(conn, { queryLimit: 1000 });
        const first = await createSnapshotCollector({ collectorId: COLLECTOR_ID }).collect(conn, { queryLimit: 1000 });
        for (const q of [...queryStats(snap.envelope.metrics), ...queryStats(first.envelope.metrics)]) {
          expect(q.text.startsWith(SQL_MARKER), q.text).toBe(false);
          expect(q.text).not.toMatch(/pg_stat_activity|pg_statio_user|pg_replication_slots|FROM pg_stat_database/);
        }
        expect(queryStats(snap.envelope.metrics).some((q) => q.text === PGBENCH_SELECT)).toBe(true);
      } finally {
        await conn.close();
      }
    }
    // The non-superuser session cannot switch tracking off, so its statements are in the view; the
    // collector filtered them.
    const tracked = await target.sql(`SELECT 1 FROM pg_stat_statements WHERE query LIKE $1`, [`${SQL_MARKER}%`]);
    expect(tracked.length).toBeGreaterThan(0);
  });

  it('uses one session for every statement, with a statement timeout and its application_name', async () => {
    const conn = await openTargetConnection({ url: target.url }, { statementTimeoutMs: 1234 });
    try {
      const collector = createSnapshotCollector({ collectorId: COLLECTOR_ID });
      for (let i = 0; i < 3; i++) await collector.collect(conn, { queryLimit: 10 });
      const sessions = await target.sql(`SELECT pid FROM pg_stat_activity WHERE application_name = 'pganalytics-collector'`);
      expect(sessions).toHaveLength(1);
      const [timeout] = await conn.query<{ statement_timeout: string }>('SHOW statement_timeout');
      expect(timeout!.statement_timeout).toBe('1234ms');
      await expect(conn.query('SELECT pg_sleep(3)')).rejects.toThrow(/statement timeout/);
    } finally {
      await conn.close();
    }
  });

  it('emits every family, reports blocking chains and leaves its own session out of connection counts', async () => {
    await target.sql('CREATE TABLE IF NOT EXISTS lock_me (id int)');
    const holder = new pg.Client({ connectionString: target.url, application_name: 'holder' });
    const waiter = new pg.Client({ connectionString: target.url, application_name: 'waiter' });
    await holder.connect();
    await waiter.connect();
    const conn = await openTargetConnection({ url: target.url }, { statementTimeoutMs: 5000 });
    try {
      await holder.query('BEGIN');
      await holder.query('LOCK TABLE lock_me IN ACCESS EXCLUSIVE MODE');
      const waiting = waiter.query('SELECT count(*) FROM lock_me').catch(() => undefined);
      const [{ pid: holderPid }] = (await holder.query('SELECT pg_backend_pid() AS pid')).rows;
      await new Promise((r) => setTimeout(r, 300));
      const snap = await createSnapshotCollector({ collectorId: COLLECTOR_ID }).collect(conn, { queryLimit: 10 });
      const types = new Set(snap.envelope.metrics.map((m) => m.type));
      for (const t of ['pg_server', 'pg_stats', 'pg_query_stats', 'pg_connections', 'pg_locks', 'pg_replication', 'pg_cache'])
        expect(types).toContain(t);
      expect(snap.errors).toEqual([]);

      const locks = snap.envelope.metrics.find((m) => m.type === 'pg_locks') as any;
      const chain = locks.databases.postgres.lock_wait_chains;
      expect(chain).toHaveLength(1);
      expect(chain[0].blocked_by).toEqual([holderPid]);
      expect(locks.databases.postgres.blocking_queries.map((b: any) => b.pid)).toEqual([holderPid]);

      const connections = snap.envelope.metrics.find((m) => m.type === 'pg_connections') as any;
      // holder (idle in transaction) + waiter (active); never the collector's own session.
      expect(connections.databases.postgres.connection_stats.total_connections).toBe(2);
      expect(connections.databases.postgres.idle_transactions.map((t: any) => t.application_name)).toEqual(['holder']);

      const stats = snap.envelope.metrics.filter((m) => m.type === 'pg_stats') as any[];
      const own = stats.find((s) => s.database === 'postgres');
      expect(own.tables.map((t: any) => t.name)).toContain('pgbench_accounts');
      expect(own.size_bytes).toBeGreaterThan(0n);
      // Sizing a table under an ACCESS EXCLUSIVE lock would queue behind it: reported as unknown.
      expect(own.tables.find((t: any) => t.name === 'lock_me').size_bytes).toBeNull();
      const server = snap.envelope.metrics.find((m) => m.type === 'pg_server') as any;
      expect(server.server_version_num).toBeGreaterThanOrEqual(150000);
      expect(server.uptime_seconds).toBeGreaterThan(0);
      await holder.query('ROLLBACK');
      await waiting;
    } finally {
      await conn.close();
      await holder.end();
      await waiter.end();
    }
  });

  it('notes a missing pg_stat_statements in the payload instead of failing', async () => {
    await target.sql('CREATE DATABASE no_pgss');
    const conn = await openTargetConnection({ url: target.pg.urlFor('no_pgss') }, { statementTimeoutMs: 5000 });
    try {
      const snap = await createSnapshotCollector({ collectorId: COLLECTOR_ID }).collect(conn, { queryLimit: 10 });
      const element = snap.envelope.metrics.find((m) => m.type === 'pg_query_stats') as any;
      expect(element).toMatchObject({ database: 'no_pgss', available: false, queries: [] });
      expect(element.note).toMatch(/pg_stat_statements is not installed.*CREATE EXTENSION/);
      expect(snap.envelope.metrics.length).toBeGreaterThan(5);
    } finally {
      await conn.close();
    }
  });
});
