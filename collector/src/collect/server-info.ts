import type { TargetConnection } from './target-connection';
import { iso, num } from './values';

const SERVER_SQL = `
SELECT version() AS version, current_setting('server_version') AS server_version,
       pg_postmaster_start_time() AS started_at,
       extract(epoch FROM now() - pg_postmaster_start_time()) AS uptime_seconds,
       pg_is_in_recovery() AS is_in_recovery, current_setting('max_connections')::int AS max_connections,
       current_setting('shared_preload_libraries') AS shared_preload_libraries`;

/** `pg_server`: version, uptime, role (primary/standby) of the target server. */
export async function collectServerInfo(
  conn: TargetConnection,
  { timestamp }: { timestamp: string },
): Promise<Record<string, unknown>> {
  const [s] = await conn.query(SERVER_SQL);
  return {
    type: 'pg_server',
    timestamp,
    database: conn.database,
    version: s?.version,
    server_version: s?.server_version,
    server_version_num: conn.serverVersionNum,
    started_at: iso(s?.started_at),
    uptime_seconds: num(s?.uptime_seconds),
    is_in_recovery: s?.is_in_recovery,
    max_connections: s?.max_connections,
    shared_preload_libraries: s?.shared_preload_libraries,
  };
}
