import type { PreparedPush } from './prepare-push';
import { queryStats } from './query-stats';

/** Arrays for UPSERT_ROLLUP: one entry per (collector, metric type, minute of received_at). */
export interface RollupArrays {
  collectorIds: string[];
  types: string[];
  buckets: string[];
  rows: number[];
  records: number[];
  calls: (number | null)[];
  totalTimes: (number | null)[];
  /** received_at (ISO) of the push whose counters the cell holds (migration 0036). */
  snapshotAts: string[];
}

interface Cell {
  collectorId: string;
  type: string;
  bucket: string;
  rows: number;
  records: number;
  calls: number | null;
  totalTime: number | null;
  /** The push whose pg_query_stats counters `calls` / `totalTime` are (the newest in the minute). */
  snapshot: PreparedPush | null;
}

/** Below PostgreSQL's bigint maximum (2^63 − 1) as a double. */
const MAX_BIGINT = 9.2e18;

/**
 * The batch's rollup, computed in memory from the pushes being stored (README "Rollup"). Rows and
 * records add up; pg_query_stats `calls` / `total_time` are cumulative counters, so a cell holds
 * those of its newest snapshot — the push with the latest received_at in the minute (a later push
 * of the batch on a tie), summed over that push's elements (one per database) — and the fold keeps
 * the newest across batches.
 */
export function buildRollup(pushes: PreparedPush[]): RollupArrays {
  // Cells by collector, then minute, then type: lookups with the strings and numbers at hand (a
  // composite string key per element had to be built and hashed every time: ~3× the cost).
  const byCollector = new Map<string, Map<number, Map<string, Cell>>>();
  const out: RollupArrays = {
    collectorIds: [],
    types: [],
    buckets: [],
    rows: [],
    records: [],
    calls: [],
    totalTimes: [],
    snapshotAts: [],
  };
  const cells: Cell[] = [];
  const minuteIso = new Map<number, string>();
  for (const p of pushes) {
    const minuteMs = Math.floor(p.receivedAt.getTime() / 60_000) * 60_000;
    let byMinute = byCollector.get(p.collectorId);
    if (!byMinute) byCollector.set(p.collectorId, (byMinute = new Map()));
    let byType = byMinute.get(minuteMs);
    if (!byType) byMinute.set(minuteMs, (byType = new Map()));
    for (const s of p.split.slices) {
      const type = s.type.length > 100 ? s.type.slice(0, 100) : s.type;
      let cell = byType.get(type);
      if (!cell) {
        let bucket = minuteIso.get(minuteMs);
        if (bucket === undefined) minuteIso.set(minuteMs, (bucket = new Date(minuteMs).toISOString()));
        cell = { collectorId: p.collectorId, type, bucket, rows: 0, records: 0, calls: null, totalTime: null, snapshot: null };
        byType.set(type, cell);
        cells.push(cell);
      }
      cell.rows++;
      cell.records += s.records;
      if (type === 'pg_query_stats') {
        if (cell.snapshot !== p) {
          // Another push: it replaces the counters unless it is older than the one they come from.
          if (cell.snapshot && cell.snapshot.receivedAt.getTime() > p.receivedAt.getTime()) continue;
          cell.snapshot = p;
          cell.calls = 0;
          cell.totalTime = 0;
        }
        // latin1: one character per byte, so the ASCII keys and numbers match exactly (no UTF-8 decode).
        const stats = queryStats(p.body.toString('latin1', s.start, s.end));
        cell.calls = (cell.calls ?? 0) + stats.calls;
        cell.totalTime = (cell.totalTime ?? 0) + stats.totalTime;
      } else if (!cell.snapshot || cell.snapshot.receivedAt.getTime() <= p.receivedAt.getTime()) cell.snapshot = p;
    }
  }
  for (const c of cells) {
    // Counters no bigint can hold (`"calls": 1e21`, `1e400` is Infinity here) are unknown, not a
    // failed cast: that would dead-letter the whole push, whose rows PostgreSQL can store.
    if (c.calls !== null && !(Math.abs(c.calls) <= MAX_BIGINT && Number.isFinite(c.totalTime))) {
      c.calls = null;
      c.totalTime = null;
    }
    out.collectorIds.push(c.collectorId);
    out.types.push(c.type);
    out.buckets.push(c.bucket);
    out.rows.push(c.rows);
    out.records.push(c.records);
    out.calls.push(c.calls);
    out.totalTimes.push(c.totalTime);
    // Every cell has one: its first push set it.
    out.snapshotAts.push((c.snapshot as PreparedPush).receivedAt.toISOString());
  }
  return out;
}
