import type { TargetConnection } from './target-connection';
import { SQL_MARKER } from './target-connection';
import { big, num } from './values';

/** Counters kept from the previous interval, per (userid, dbid, queryid, toplevel). */
export type QueryBaseline = { at: number; rows: Map<string, QueryCounters> };

interface QueryCounters {
  calls: bigint;
  rows: bigint;
  total_time: number;
  shared_blks_hit: bigint;
  shared_blks_read: bigint;
  shared_blks_dirtied: bigint;
  shared_blks_written: bigint;
  temp_blks_read: bigint;
  temp_blks_written: bigint;
}

const BLOCK_FIELDS = [
  'shared_blks_hit',
  'shared_blks_read',
  'shared_blks_dirtied',
  'shared_blks_written',
  'temp_blks_read',
  'temp_blks_written',
] as const;

/** Column list for the server's pg_stat_statements version (PG 12 names times differently). */
function countersSql(v: number, schema: string): string {
  const t = v >= 130000 ? '_exec_time' : '_time';
  const io = v >= 170000 ? 'shared_blk_' : 'blk_';
  const wal = v >= 130000 ? 's.wal_records, s.wal_fpi, s.wal_bytes' : '0 AS wal_records, 0 AS wal_fpi, 0 AS wal_bytes';
  return `SELECT s.userid::text AS userid, s.dbid::text AS dbid, d.datname, s.queryid,
       ${v >= 140000 ? 's.toplevel' : 'true AS toplevel'},
       s.calls, s.rows, s.total${t} AS total_time, s.mean${t} AS mean_time, s.min${t} AS min_time,
       s.max${t} AS max_time, s.stddev${t} AS stddev_time,
       s.shared_blks_hit, s.shared_blks_read, s.shared_blks_dirtied, s.shared_blks_written,
       s.local_blks_hit, s.local_blks_read, s.local_blks_dirtied, s.local_blks_written,
       s.temp_blks_read, s.temp_blks_written, s.${io}read_time AS blk_read_time, s.${io}write_time AS blk_write_time, ${wal}
  FROM ${schema}.pg_stat_statements s
  JOIN pg_database d ON d.oid = s.dbid
 WHERE s.queryid IS NOT NULL
   AND s.query NOT LIKE '${SQL_MARKER}%'`;
}

type Row = Record<string, unknown> & { userid: string; dbid: string; datname: string; queryid: string; toplevel: boolean };

export interface QueryStatsResult {
  elements: Record<string, unknown>[];
  baseline: QueryBaseline | undefined;
}

/**
 * pg_stat_statements top `limit` by total time (by the interval's total time once a baseline
 * exists), one `pg_query_stats` element per database, each query with its cumulative counters and
 * its `delta` since the previous interval. Reads the counters of every statement (not their text:
 * texts are fetched for the top `limit` only). Without the extension: one element with a `note`.
 */
export async function collectQueryStats(
  conn: TargetConnection,
  {
    limit,
    baseline,
    timestamp,
    maxQueryLength = 8192,
  }: { limit: number; baseline?: QueryBaseline; timestamp: string; maxQueryLength?: number },
): Promise<QueryStatsResult> {
  const [ext] = await conn.query<{ schema: string }>(
    `SELECT quote_ident(n.nspname) AS schema FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
      WHERE e.extname = 'pg_stat_statements'`,
  );
  const unavailable = (note: string): QueryStatsResult => ({
    elements: [{ type: 'pg_query_stats', timestamp, database: conn.database, available: false, note, queries: [] }],
    baseline: undefined,
  });
  if (!ext) {
    return unavailable(
      `pg_stat_statements is not installed in database "${conn.database}": add it to shared_preload_libraries and run CREATE EXTENSION pg_stat_statements`,
    );
  }
  let rows: Row[];
  try {
    rows = await conn.query<Row>(countersSql(conn.serverVersionNum, ext.schema));
  } catch (err) {
    return unavailable(`pg_stat_statements cannot be read: ${(err as Error).message}`);
  }
  const now = Date.now();
  const current = new Map<string, QueryCounters>();
  const ranked = rows.map((row) => {
    const key = `${row.userid}:${row.dbid}:${row.queryid}:${row.toplevel}`;
    const counters: QueryCounters = {
      calls: big(row.calls)!,
      rows: big(row.rows)!,
      total_time: num(row.total_time)!,
      ...(Object.fromEntries(BLOCK_FIELDS.map((f) => [f, big(row[f])!])) as Pick<QueryCounters, (typeof BLOCK_FIELDS)[number]>),
    };
    current.set(key, counters);
    const delta = baseline ? deltaOf(counters, baseline.rows.get(key)) : null;
    return { row, counters, delta, rank: delta ? delta.total_time : counters.total_time };
  });
  // Without a baseline every statement ranks by its cumulative time; with one, only statements that
  // ran during the interval matter.
  const top = ranked
    .filter((r) => !r.delta || r.delta.calls > 0n)
    .sort((a, b) => b.rank - a.rank)
    .slice(0, limit);
  const texts = await queryTexts(
    conn,
    ext.schema,
    top.map((r) => r.row.queryid),
    maxQueryLength,
  );
  const byDatabase = new Map<string, Record<string, unknown>[]>([[conn.database, []]]);
  for (const { row, delta } of top) {
    const queryid = big(row.queryid)!;
    const list = byDatabase.get(row.datname) ?? [];
    byDatabase.set(row.datname, list);
    list.push({
      queryid,
      hash: queryid,
      userid: Number(row.userid),
      toplevel: row.toplevel,
      calls: big(row.calls),
      rows: big(row.rows),
      total_time: num(row.total_time),
      mean_time: num(row.mean_time),
      min_time: num(row.min_time),
      max_time: num(row.max_time),
      stddev_time: num(row.stddev_time),
      ...Object.fromEntries(
        [
          ...BLOCK_FIELDS,
          'local_blks_hit',
          'local_blks_read',
          'local_blks_dirtied',
          'local_blks_written',
          'wal_records',
          'wal_fpi',
        ].map((f) => [f, big(row[f])]),
      ),
      wal_bytes: big(row.wal_bytes === null ? null : String(row.wal_bytes).split('.')[0]),
      blk_read_time: num(row.blk_read_time),
      blk_write_time: num(row.blk_write_time),
      text: texts.get(row.queryid) ?? '',
      delta,
    });
  }
  const intervalSeconds = baseline ? (now - baseline.at) / 1000 : null;
  return {
    elements: [...byDatabase].map(([database, queries]) => ({
      type: 'pg_query_stats',
      timestamp,
      database,
      available: true,
      interval_seconds: intervalSeconds,
      queries,
    })),
    baseline: { at: now, rows: current },
  };
}

function deltaOf(cur: QueryCounters, prev: QueryCounters | undefined) {
  // New since the last interval, or the counters were reset (they went down): all of it is new.
  const base = prev && prev.calls <= cur.calls ? prev : undefined;
  const calls = cur.calls - (base?.calls ?? 0n);
  const totalTime = Math.max(0, cur.total_time - (base?.total_time ?? 0));
  return {
    calls,
    total_time: totalTime,
    mean_time: calls > 0n ? totalTime / Number(calls) : 0,
    rows: cur.rows - (base?.rows ?? 0n),
    ...(Object.fromEntries(BLOCK_FIELDS.map((f) => [f, cur[f] - (base?.[f] ?? 0n)])) as Record<
      (typeof BLOCK_FIELDS)[number],
      bigint
    >),
  };
}

async function queryTexts(
  conn: TargetConnection,
  schema: string,
  ids: string[],
  maxLength: number,
): Promise<Map<string, string>> {
  if (ids.length === 0) return new Map();
  const rows = await conn.query<{ queryid: string; text: string }>(
    `SELECT DISTINCT ON (queryid) queryid, left(query, $2) AS text FROM ${schema}.pg_stat_statements
      WHERE queryid = ANY($1::bigint[])`,
    [ids, maxLength],
  );
  return new Map(rows.map((r) => [r.queryid, r.text]));
}
