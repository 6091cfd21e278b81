import type { TargetConnection } from './target-connection';
import { big, int, iso } from './values';

/**
 * Size functions take a lock on the relation: skip (size null) a relation someone holds or awaits
 * an ACCESS EXCLUSIVE lock on, so the collector never queues behind a migration or blocks others.
 * The session's lock_timeout is the backstop for the race this check leaves.
 */
const LOCKED = (rel: string) =>
  `EXISTS (SELECT 1 FROM pg_locks l WHERE l.relation = ${rel} AND l.mode = 'AccessExclusiveLock' AND l.pid <> pg_backend_pid())`;

const DATABASES_SQL = `
SELECT d.datname, d.numbackends, d.xact_commit, d.xact_rollback, d.blks_read, d.blks_hit,
       d.tup_returned, d.tup_fetched, d.tup_inserted, d.tup_updated, d.tup_deleted, d.conflicts,
       d.temp_files, d.temp_bytes, d.deadlocks, d.stats_reset,
       CASE WHEN has_database_privilege(d.datname, 'CONNECT') THEN pg_database_size(d.datname) END AS size_bytes
  FROM pg_stat_database d JOIN pg_database db ON db.oid = d.datid
 WHERE NOT db.datistemplate
 ORDER BY d.datname`;

const TABLES_SQL = `
SELECT schemaname, relname, n_live_tup, n_dead_tup, n_mod_since_analyze, seq_scan, idx_scan,
       CASE WHEN NOT ${LOCKED('relid')} THEN pg_total_relation_size(relid) END AS size_bytes, last_vacuum, last_autovacuum, last_analyze,
       last_autoanalyze, vacuum_count, autovacuum_count
  FROM pg_stat_user_tables ORDER BY size_bytes DESC NULLS LAST, relname LIMIT $1`;

const INDEXES_SQL = `
SELECT s.schemaname, s.relname, s.indexrelname, s.idx_scan, s.idx_tup_read, s.idx_tup_fetch,
       CASE WHEN NOT ${LOCKED('s.relid')} THEN pg_relation_size(s.indexrelid) END AS size_bytes, i.indisunique, i.indisprimary
  FROM pg_stat_user_indexes s JOIN pg_index i ON i.indexrelid = s.indexrelid
 ORDER BY (s.idx_scan = 0 AND NOT i.indisunique) DESC, size_bytes DESC NULLS LAST, s.indexrelname
 LIMIT $1`;

/**
 * `pg_stats`: one element per database from pg_stat_database (transactions, tuples, blocks, size,
 * cache hit ratio). Table and index statistics (top `limit` by size, unused indexes first) are
 * per-database views, so they are filled for the connected database only: the collector keeps one
 * session and never opens one per database.
 */
export async function collectDatabaseStats(
  conn: TargetConnection,
  { limit, timestamp }: { limit: number; timestamp: string },
): Promise<Record<string, unknown>[]> {
  const databases = await conn.query(DATABASES_SQL);
  const tables = await conn.query(TABLES_SQL, [limit]);
  const indexes = await conn.query(INDEXES_SQL, [limit]);
  return databases.map((d) => {
    const own = d.datname === conn.database;
    const hit = big(d.blks_hit)!;
    const read = big(d.blks_read)!;
    return {
      type: 'pg_stats',
      timestamp,
      database: d.datname,
      size_bytes: big(d.size_bytes),
      backends: int(d.numbackends),
      transactions_committed: big(d.xact_commit),
      transactions_rolledback: big(d.xact_rollback),
      tuples_returned: big(d.tup_returned),
      tuples_fetched: big(d.tup_fetched),
      tuples_inserted: big(d.tup_inserted),
      tuples_updated: big(d.tup_updated),
      tuples_deleted: big(d.tup_deleted),
      blocks_read: read,
      blocks_hit: hit,
      cache_hit_ratio: hit + read > 0n ? Number(hit) / Number(hit + read) : null,
      conflicts: big(d.conflicts),
      deadlocks: big(d.deadlocks),
      temp_files: big(d.temp_files),
      temp_bytes: big(d.temp_bytes),
      stats_reset: iso(d.stats_reset),
      tables: own ? tables.map(table) : [],
      indexes: own ? indexes.map(index) : [],
    };
  });
}

const table = (t: Record<string, unknown>) => ({
  schema: t.schemaname,
  name: t.relname,
  live_tuples: big(t.n_live_tup),
  dead_tuples: big(t.n_dead_tup),
  modified_since_analyze: big(t.n_mod_since_analyze),
  seq_scans: big(t.seq_scan),
  index_scans: big(t.idx_scan),
  size_bytes: big(t.size_bytes),
  last_vacuum: iso(t.last_vacuum),
  last_autovacuum: iso(t.last_autovacuum),
  last_analyze: iso(t.last_analyze),
  last_autoanalyze: iso(t.last_autoanalyze),
  vacuum_count: big(t.vacuum_count),
  autovacuum_count: big(t.autovacuum_count),
});

const index = (i: Record<string, unknown>) => ({
  schema: i.schemaname,
  table: i.relname,
  name: i.indexrelname,
  scans: big(i.idx_scan),
  tuples_read: big(i.idx_tup_read),
  tuples_returned: big(i.idx_tup_fetch),
  size_bytes: big(i.size_bytes),
  // A unique index enforces a constraint even when never scanned: not "unused".
  status: big(i.idx_scan) === 0n && !i.indisunique ? 'UNUSED' : 'USED',
  unique: i.indisunique,
  primary: i.indisprimary,
});
