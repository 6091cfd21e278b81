import type { TargetConnection } from './target-connection';
import { COLLECTOR_APPLICATION_NAME } from './target-connection';
import { int, iso, num } from './values';

const LOCKS_SQL = `
SELECT coalesce(a.datname, '') AS datname, l.pid, l.locktype, l.mode, l.granted, l.relation::regclass::text AS relation,
       a.usename, a.state, extract(epoch FROM now() - coalesce(l.waitstart, a.query_start)) AS lock_age_seconds,
       left(a.query, 200) AS query
  FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.pid <> pg_backend_pid() AND coalesce(a.application_name, '') <> '${COLLECTOR_APPLICATION_NAME}'
 ORDER BY l.granted, lock_age_seconds DESC NULLS LAST LIMIT $1`;

// PG 12/13 have no pg_locks.waitstart.
const LOCKS_SQL_PRE14 = LOCKS_SQL.replace('coalesce(l.waitstart, a.query_start)', 'a.query_start');

const WAITS_SQL = `
SELECT coalesce(w.datname, '') AS datname, w.pid, w.usename, w.wait_event_type, w.wait_event,
       extract(epoch FROM now() - w.query_start) AS waiting_seconds, left(w.query, 200) AS query,
       pg_blocking_pids(w.pid) AS blocked_by
  FROM pg_stat_activity w
 WHERE w.pid <> pg_backend_pid() AND cardinality(pg_blocking_pids(w.pid)) > 0`;

const BLOCKERS_SQL = `
SELECT coalesce(datname, '') AS datname, pid, usename, application_name, state, query_start, state_change,
       extract(epoch FROM now() - query_start) AS duration_seconds, left(query, 200) AS query
  FROM pg_stat_activity WHERE pid = ANY($1::int[])`;

/**
 * `pg_locks`: locks held and awaited (waiting first, `limit` at most), the sessions that block
 * others, and wait chains (who waits on whom, from pg_blocking_pids) per database.
 */
export async function collectLocks(
  conn: TargetConnection,
  { limit, timestamp }: { limit: number; timestamp: string },
): Promise<Record<string, unknown>> {
  const locks = await conn.query(conn.serverVersionNum >= 140000 ? LOCKS_SQL : LOCKS_SQL_PRE14, [limit]);
  const waits = await conn.query(WAITS_SQL);
  const blockerPids = [...new Set(waits.flatMap((w) => w.blocked_by as number[]))];
  const blockers = blockerPids.length ? await conn.query(BLOCKERS_SQL, [blockerPids]) : [];
  const databases: Record<string, { active_locks: unknown[]; blocking_queries: unknown[]; lock_wait_chains: unknown[] }> = {};
  const entry = (db: string) => (databases[db] ??= { active_locks: [], blocking_queries: [], lock_wait_chains: [] });
  for (const l of locks) {
    entry(l.datname).active_locks.push({
      pid: l.pid,
      locktype: l.locktype,
      mode: l.mode,
      granted: l.granted,
      relation: l.relation,
      username: l.usename,
      state: l.state,
      lock_age_seconds: num(l.lock_age_seconds),
      query: l.query,
    });
  }
  for (const b of blockers) {
    entry(b.datname).blocking_queries.push({
      pid: b.pid,
      username: b.usename,
      application_name: b.application_name,
      state: b.state,
      query_start: iso(b.query_start),
      duration_seconds: num(b.duration_seconds),
      query: b.query,
    });
  }
  for (const w of waits) {
    entry(w.datname).lock_wait_chains.push({
      waiting_pid: w.pid,
      blocked_by: (w.blocked_by as number[]).map(int),
      username: w.usename,
      wait_event_type: w.wait_event_type,
      wait_event: w.wait_event,
      waiting_seconds: num(w.waiting_seconds),
      query: w.query,
    });
  }
  return { type: 'pg_locks', timestamp, databases };
}
