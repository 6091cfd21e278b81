import type { TargetConnection } from './target-connection';
import { COLLECTOR_APPLICATION_NAME } from './target-connection';
import { int, iso, num } from './values';

/** Every backend but the collector's own session (by pid and by application_name). */
const OTHERS = `pid <> pg_backend_pid() AND coalesce(application_name, '') <> '${COLLECTOR_APPLICATION_NAME}'`;

const BY_STATE_SQL = `
SELECT coalesce(datname, '') AS datname, coalesce(state, backend_type) AS state, count(*) AS count,
       max(extract(epoch FROM now() - state_change)) AS max_age_seconds,
       min(extract(epoch FROM now() - state_change)) AS min_age_seconds
  FROM pg_stat_activity WHERE ${OTHERS} AND backend_type = 'client backend'
 GROUP BY 1, 2 ORDER BY 1, 2`;

const TRANSACTIONS_SQL = `
SELECT pid, coalesce(datname, '') AS datname, usename, application_name, state,
       extract(epoch FROM now() - xact_start) AS duration_seconds, xact_start, query_start,
       wait_event_type, wait_event, left(query, 500) AS query
  FROM pg_stat_activity
 WHERE ${OTHERS} AND xact_start IS NOT NULL
 ORDER BY xact_start LIMIT $1`;

/**
 * `pg_connections`: connections by state per database, the longest open transactions and the
 * transactions left idle. The collector's own session is never counted.
 */
export async function collectConnections(
  conn: TargetConnection,
  { limit, timestamp }: { limit: number; timestamp: string },
): Promise<Record<string, unknown>> {
  const [max] = await conn.query<{ v: string }>(`SELECT current_setting('max_connections') AS v`);
  const states = await conn.query(BY_STATE_SQL);
  const transactions = await conn.query(TRANSACTIONS_SQL, [limit]);
  const databases: Record<
    string,
    {
      connection_stats: { by_state: unknown[]; total_connections: number };
      long_running_transactions: unknown[];
      idle_transactions: unknown[];
    }
  > = {};
  const entry = (db: string) =>
    (databases[db] ??= {
      connection_stats: { by_state: [], total_connections: 0 },
      long_running_transactions: [],
      idle_transactions: [],
    });
  for (const s of states) {
    const e = entry(s.datname);
    e.connection_stats.by_state.push({
      state: s.state,
      count: int(s.count),
      max_age_seconds: num(s.max_age_seconds),
      min_age_seconds: num(s.min_age_seconds),
    });
    e.connection_stats.total_connections += int(s.count);
  }
  for (const t of transactions) {
    const row = {
      pid: t.pid,
      username: t.usename,
      application_name: t.application_name,
      state: t.state,
      duration_seconds: num(t.duration_seconds),
      xact_start: iso(t.xact_start),
      query_start: iso(t.query_start),
      wait_event_type: t.wait_event_type,
      wait_event: t.wait_event,
      query: t.query,
    };
    const e = entry(t.datname);
    if (String(t.state).startsWith('idle in transaction')) e.idle_transactions.push(row);
    else e.long_running_transactions.push(row);
  }
  return { type: 'pg_connections', timestamp, max_connections: int(max?.v), databases };
}
