import type { PreparedPush } from './prepare-push';

/** Arrays for UPSERT_ROLLUP: one entry per (collector, metric type, minute of received_at). */
export interface RollupArrays {
  collectorIds: string[];
  types: string[];
  buckets: string[];
  rows: number[];
  records: number[];
  calls: (number | null)[];
  totalTimes: (number | null)[];
}

interface Cell {
  collectorId: string;
  type: string;
  bucket: string;
  rows: number;
  records: number;
  calls: number | null;
  totalTime: number | null;
}

/** Sums calls / total time over a pg_query_stats element's `queries` (PG 13+ names accepted too). */
function queryStats(text: string): { calls: number; totalTime: number } | null {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return null; // PostgreSQL rejects it in the COPY; the batch is isolated there.
  }
  const queries = (parsed as { queries?: unknown }).queries;
  if (!Array.isArray(queries)) return null;
  let calls = 0;
  let totalTime = 0;
  for (const q of queries as Record<string, unknown>[]) {
    const c = Number(q?.calls);
    const t = Number(q?.total_time ?? q?.total_exec_time);
    if (Number.isFinite(c)) calls += c;
    if (Number.isFinite(t)) totalTime += t;
  }
  return { calls: Math.round(calls), totalTime };
}

/** The batch's rollup, computed in memory from the pushes being stored (README "Rollup"). */
export function buildRollup(pushes: PreparedPush[]): RollupArrays {
  const cells = new Map<string, Cell>();
  for (const p of pushes) {
    const minute = new Date(Math.floor(p.receivedAt.getTime() / 60_000) * 60_000).toISOString();
    for (const s of p.split.slices) {
      const type = s.type.slice(0, 100);
      const key = `${p.collectorId}|${type}|${minute}`;
      let cell = cells.get(key);
      if (!cell) {
        cell = { collectorId: p.collectorId, type, bucket: minute, rows: 0, records: 0, calls: null, totalTime: null };
        cells.set(key, cell);
      }
      cell.rows++;
      cell.records += s.records;
      if (type === 'pg_query_stats') {
        const stats = queryStats(p.text.slice(s.start, s.end));
        if (stats) {
          cell.calls = (cell.calls ?? 0) + stats.calls;
          cell.totalTime = (cell.totalTime ?? 0) + stats.totalTime;
        }
      }
    }
  }
  const out: RollupArrays = { collectorIds: [], types: [], buckets: [], rows: [], records: [], calls: [], totalTimes: [] };
  for (const c of cells.values()) {
    out.collectorIds.push(c.collectorId);
    out.types.push(c.type);
    out.buckets.push(c.bucket);
    out.rows.push(c.rows);
    out.records.push(c.records);
    out.calls.push(c.calls);
    out.totalTimes.push(c.totalTime);
  }
  return out;
}
