import type { TargetConnection } from './target-connection';
import { big, num } from './values';

const TABLE_HIT_SQL = `
SELECT schemaname, relname, heap_blks_hit, heap_blks_read,
       heap_blks_hit::float8 / nullif(heap_blks_hit + heap_blks_read, 0) AS hit_ratio
  FROM pg_statio_user_tables ORDER BY heap_blks_hit + heap_blks_read DESC, relname LIMIT $1`;

const INDEX_HIT_SQL = `
SELECT schemaname, relname, indexrelname, idx_blks_hit, idx_blks_read,
       idx_blks_hit::float8 / nullif(idx_blks_hit + idx_blks_read, 0) AS hit_ratio
  FROM pg_statio_user_indexes ORDER BY idx_blks_hit + idx_blks_read DESC, indexrelname LIMIT $1`;

const TOTALS_SQL = `
SELECT sum(heap_blks_hit)::float8 / nullif(sum(heap_blks_hit + heap_blks_read), 0) AS table_hit_ratio,
       (SELECT sum(idx_blks_hit)::float8 / nullif(sum(idx_blks_hit + idx_blks_read), 0) FROM pg_statio_user_indexes) AS index_hit_ratio
  FROM pg_statio_user_tables`;

/** `pg_cache`: buffer cache hit ratios of the connected database, overall and for its busiest tables and indexes. */
export async function collectCache(
  conn: TargetConnection,
  { limit, timestamp }: { limit: number; timestamp: string },
): Promise<Record<string, unknown>> {
  const [totals] = await conn.query(TOTALS_SQL);
  const tables = await conn.query(TABLE_HIT_SQL, [limit]);
  const indexes = await conn.query(INDEX_HIT_SQL, [limit]);
  return {
    type: 'pg_cache',
    timestamp,
    database: conn.database,
    table_hit_ratio: num(totals?.table_hit_ratio),
    index_hit_ratio: num(totals?.index_hit_ratio),
    databases: {
      [conn.database]: {
        table_cache_hit: tables.map((t) => ({
          schema: t.schemaname,
          table: t.relname,
          blocks_hit: big(t.heap_blks_hit),
          blocks_read: big(t.heap_blks_read),
          hit_ratio: num(t.hit_ratio),
        })),
        index_cache_hit: indexes.map((i) => ({
          schema: i.schemaname,
          table: i.relname,
          index: i.indexrelname,
          blocks_hit: big(i.idx_blks_hit),
          blocks_read: big(i.idx_blks_read),
          hit_ratio: num(i.hit_ratio),
        })),
      },
    },
  };
}
