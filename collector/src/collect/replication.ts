import type { TargetConnection } from './target-connection';
import { big, iso, num } from './values';

const SLOTS_SQL = `
SELECT slot_name, plugin, slot_type, coalesce(database, '') AS database, active, active_pid,
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn) END::bigint AS retained_bytes
  FROM pg_replication_slots ORDER BY slot_name`;

const STANDBYS_SQL = `
SELECT pid, usename, application_name, client_addr::text AS client_addr, state, sync_state,
       sent_lsn::text, write_lsn::text, flush_lsn::text, replay_lsn::text,
       pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint AS replay_lag_bytes,
       extract(epoch FROM write_lag) AS write_lag_seconds, extract(epoch FROM flush_lag) AS flush_lag_seconds,
       extract(epoch FROM replay_lag) AS replay_lag_seconds, backend_start
  FROM pg_stat_replication ORDER BY application_name, pid`;

const RECEIVER_SQL = `
SELECT status, sender_host, sender_port, slot_name, latest_end_time,
       extract(epoch FROM now() - pg_last_xact_replay_timestamp()) AS replay_delay_seconds
  FROM pg_stat_wal_receiver`;

/**
 * `pg_replication`: slots (with the WAL they hold back), standbys and their lag when this server
 * is a primary, the WAL receiver when it is a standby. Parts that the role may not read are
 * reported in `collection_errors` instead of failing the snapshot.
 */
export async function collectReplication(
  conn: TargetConnection,
  { timestamp }: { timestamp: string },
): Promise<Record<string, unknown>> {
  const errors: string[] = [];
  const attempt = async <T>(what: string, fn: () => Promise<T[]>): Promise<T[]> => {
    try {
      return await fn();
    } catch (err) {
      errors.push(`${what}: ${(err as Error).message}`);
      return [];
    }
  };
  const [recovery] = await conn.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r');
  const inRecovery = recovery?.r === true;
  const slots = await attempt('replication_slots', () => conn.query(SLOTS_SQL));
  const standbys = inRecovery ? [] : await attempt('replication_status', () => conn.query(STANDBYS_SQL));
  const receiver = inRecovery ? await attempt('wal_receiver', () => conn.query(RECEIVER_SQL)) : [];
  return {
    type: 'pg_replication',
    timestamp,
    is_in_recovery: inRecovery,
    replication_slots: slots.map((s) => ({
      slot_name: s.slot_name,
      plugin: s.plugin,
      slot_type: s.slot_type,
      database: s.database,
      active: s.active,
      active_pid: s.active_pid,
      retained_bytes: big(s.retained_bytes),
    })),
    replication_status: standbys.map((r) => ({
      pid: r.pid,
      username: r.usename,
      application_name: r.application_name,
      client_addr: r.client_addr,
      state: r.state,
      sync_state: r.sync_state,
      sent_lsn: r.sent_lsn,
      write_lsn: r.write_lsn,
      flush_lsn: r.flush_lsn,
      replay_lsn: r.replay_lsn,
      replay_lag_bytes: big(r.replay_lag_bytes),
      write_lag_seconds: num(r.write_lag_seconds),
      flush_lag_seconds: num(r.flush_lag_seconds),
      replay_lag_seconds: num(r.replay_lag_seconds),
      backend_start: iso(r.backend_start),
    })),
    wal_receiver: receiver[0]
      ? {
          status: receiver[0].status,
          sender_host: receiver[0].sender_host,
          sender_port: receiver[0].sender_port,
          slot_name: receiver[0].slot_name,
          latest_end_time: iso(receiver[0].latest_end_time),
          replay_delay_seconds: num(receiver[0].replay_delay_seconds),
        }
      : null,
    collection_errors: errors,
  };
}
