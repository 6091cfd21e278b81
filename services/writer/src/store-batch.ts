import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { from as copyFrom } from 'pg-copy-streams';
import type { Pool, PoolClient } from '@pga/db';
import { copyRows } from './copy-rows';
import type { PreparedPush } from './prepare-push';
import { buildRollup } from './rollup';
import { plainArray, textArray } from './sql-array';
import { COPY_METRICS, INSERT_LEDGER, INSERT_ROLLUP_BATCH, UPDATE_COLLECTORS_AFTER_PUSH } from './sql';
import type { StatusRow } from './status-publisher';

export interface StoreBatchOptions {
  /** Test hook (WRITER_TEST_PAUSE_MID_COPY_MS): called after half of the rows went into the COPY. */
  onMidCopy?: () => Promise<void>;
}

export interface StoreBatchResult {
  /** Pushes stored by this batch. */
  stored: number;
  /** Pushes skipped because the ledger already had them (a redelivery). */
  duplicates: number;
  rows: number;
  bytes: number;
  copyMs: number;
  /** Milliseconds per phase: ledger insert, COPY, collector state, rollup, COMMIT. */
  phases: { ledger: number; copy: number; state: number; rollup: number; commit: number };
  /** Push ids this batch stored (first occurrence). */
  storedIds: string[];
  /** Collectors whose state this batch changed (to publish after COMMIT). */
  statuses: StatusRow[];
}

/**
 * The batch's pushes for the ledger: each id once (its first copy; the same push may sit in two jobs
 * of one batch), grouped by the replay window of the edge that wrote its job — one group, i.e. one
 * statement, unless edges with different IDEMPOTENCY_TTL_SECONDS feed the same queue.
 */
function ledgerGroups(pushes: readonly PreparedPush[]): Map<number, PreparedPush[]> {
  const seen = new Set<string>();
  const groups = new Map<number, PreparedPush[]>();
  for (const p of pushes) {
    if (seen.has(p.pushId)) continue;
    seen.add(p.pushId);
    const group = groups.get(p.replayWindowSeconds);
    if (group) group.push(p);
    else groups.set(p.replayWindowSeconds, [p]);
  }
  return groups;
}

/**
 * Stores pushes in ONE transaction on a checked-out client: ledger insert (keeps only ids never
 * stored), COPY of their rows (already `processed`), rollup cells (one row), collector state, COMMIT.
 * Nothing is acknowledged by the caller before this resolves. On any error the transaction is rolled
 * back and the client discarded (`release(err)`), so a failed COPY leaves no trace.
 */
export async function storeBatch(pool: Pool, pushes: PreparedPush[], options: StoreBatchOptions = {}): Promise<StoreBatchResult> {
  const client = await pool.connect();
  // A checked-out client whose server connection dies emits 'error' besides failing its query;
  // without a listener that would crash the process. The failed query carries the error to us.
  const ignore = () => undefined;
  client.on('error', ignore);
  let mark = performance.now();
  const lap = () => {
    const now = performance.now();
    const ms = now - mark;
    mark = now;
    return ms;
  };
  try {
    await client.query('BEGIN');
    const fresh = new Set<string>();
    for (const [window, group] of ledgerGroups(pushes)) {
      const ledger = await client.query<{ push_id: string }>(INSERT_LEDGER, [
        plainArray(group.map((p) => p.pushId)),
        plainArray(group.map((p) => p.collectorId)),
        plainArray(group.map((p) => p.receivedIso)),
        plainArray(group.map((p) => p.split.slices.length)),
        plainArray(group.map((p) => p.checksum)),
        window,
      ]);
      for (const r of ledger.rows) fresh.add(r.push_id);
    }
    const ledgerMs = lap();
    // The same push may sit twice in one batch (two jobs): `delete` keeps only its first copy.
    const toStore = pushes.filter((p) => fresh.delete(p.pushId));
    let rows = 0;
    let bytes = 0;
    for (const p of toStore) {
      rows += p.split.slices.length;
      for (const s of p.split.slices) bytes += s.end - s.start;
    }

    lap();
    if (rows > 0) {
      const source = Readable.from(
        copyRows(toStore, {
          processedAtIso: new Date().toISOString(),
          ...(options.onMidCopy ? { pauseAfterRows: Math.max(1, Math.floor(rows / 2)), onPause: options.onMidCopy } : {}),
        }),
      );
      await pipeline(source, client.query(copyFrom(COPY_METRICS)));
    }
    const copyMs = lap();

    let statuses: StatusRow[] = [];
    let stateMs = 0;
    let rollupMs = 0;
    if (toStore.length > 0) {
      const r = buildRollup(toStore);
      await client.query(INSERT_ROLLUP_BATCH, [
        plainArray(r.collectorIds),
        textArray(r.types),
        plainArray(r.buckets),
        plainArray(r.rows),
        plainArray(r.records),
        plainArray(r.calls),
        plainArray(r.totalTimes),
      ]);
      rollupMs = lap();
      // Last before COMMIT: the collector rows stay locked only for this statement and the COMMIT,
      // so concurrent batches of the same collectors overlap everywhere else.
      statuses = await updateCollectors(client, toStore);
      stateMs = lap();
    }
    await client.query('COMMIT');
    const commitMs = lap();
    client.off('error', ignore);
    client.release();
    return {
      stored: toStore.length,
      duplicates: pushes.length - toStore.length,
      rows,
      bytes,
      copyMs,
      phases: { ledger: ledgerMs, copy: copyMs, state: stateMs, rollup: rollupMs, commit: commitMs },
      storedIds: toStore.map((p) => p.pushId),
      statuses,
    };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    client.release(err instanceof Error ? err : true);
    throw err;
  }
}

async function updateCollectors(client: PoolClient, pushes: PreparedPush[]): Promise<StatusRow[]> {
  const per = new Map<string, { last: Date; rows: number; pushes: number; lastCount: number }>();
  for (const p of pushes) {
    const n = p.split.slices.length;
    const agg = per.get(p.collectorId);
    if (!agg) per.set(p.collectorId, { last: p.receivedAt, rows: n, pushes: 1, lastCount: n });
    else {
      agg.rows += n;
      agg.pushes++;
      if (p.receivedAt >= agg.last) {
        agg.last = p.receivedAt;
        agg.lastCount = n;
      }
    }
  }
  const ids = [...per.keys()].sort();
  const { rows } = await client.query<StatusRow>(UPDATE_COLLECTORS_AFTER_PUSH, [
    plainArray(ids),
    plainArray(ids.map((id) => per.get(id)!.last.toISOString())),
    plainArray(ids.map((id) => per.get(id)!.rows)),
    plainArray(ids.map((id) => per.get(id)!.pushes)),
    plainArray(ids.map((id) => per.get(id)!.lastCount)),
  ]);
  return rows;
}
