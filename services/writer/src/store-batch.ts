import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { from as copyFrom } from 'pg-copy-streams';
import { checkOut, type Pool, type PoolClient } from '@pga/db';
import { connectFailure } from './classify-error';
import { copyRows } from './copy-rows';
import type { PreparedPush } from './prepare-push';
import { buildRollup } from './rollup';
import { plainArray, textArray } from './sql-array';
import { COPY_METRICS, INSERT_LEDGER, INSERT_ROLLUP_BATCH, UPDATE_COLLECTORS_AFTER_PUSH } from './sql';
import type { StatusRow } from './status-publisher';

export interface StoreBatchOptions {
  /** METRICS_RETENTION_DAYS: pushes accepted longer ago than this are not stored (see INSERT_LEDGER). */
  retentionDays: number;
  /**
   * Longest the transaction may take, BEGIN to COMMIT, in ms (WRITER_BATCH_DEADLINE_MS); none when
   * absent. Then the connection is closed and the batch fails with a transient BatchDeadlineError.
   */
  deadlineMs?: number;
  /** Test hook (WRITER_TEST_PAUSE_MID_COPY_MS): called after half of the rows went into the COPY. */
  onMidCopy?: () => Promise<void>;
}

export interface StoreBatchResult {
  /** Pushes stored by this batch. */
  stored: number;
  /** Pushes skipped because the ledger already had them (a redelivery). */
  duplicates: number;
  /** Pushes skipped because they were accepted longer ago than the retention. */
  expired: number;
  rows: number;
  bytes: number;
  copyMs: number;
  /** Milliseconds per phase: ledger insert, COPY, collector state, rollup, COMMIT. */
  phases: { ledger: number; copy: number; state: number; rollup: number; commit: number };
  /** Push ids this batch stored (first occurrence). */
  storedIds: string[];
  /** Push ids this batch did not store because they are past the retention. */
  expiredIds: string[];
  /** Collectors whose state this batch changed (to publish after COMMIT). */
  statuses: StatusRow[];
  /**
   * Of the pushes stored, those whose collector has no row in `collectors` (no foreign key: see
   * migrations/0002), and those collectors' ids. None in a healthy system (collectors are only
   * soft-deleted, and a token is issued after its collector's row is committed): a writer on the
   * wrong database (a wrong DATABASE_URL), or a database restored from a backup older than their
   * registration.
   */
  unknown: { pushes: number; collectorIds: string[] };
}

/**
 * A batch's transaction outlived its deadline: its connection was closed. Transient (a connection
 * failure, hence the socket-style code): the batch is retried on a new connection, and should its
 * COMMIT have reached the server after all, the ledger skips its pushes on the retry.
 */
export class BatchDeadlineError extends Error {
  override readonly name = 'BatchDeadlineError';
  readonly code = 'ETIMEDOUT';
  constructor(deadlineMs: number, cause: unknown) {
    super(`batch transaction not done within ${deadlineMs} ms: connection closed, batch to be retried`, { cause });
  }
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
 * stored and within the retention), COPY of their rows (already `processed`), rollup cells (one
 * row), collector state, COMMIT. Nothing is acknowledged by the caller before this resolves. On any
 * error the transaction is rolled back and the client discarded (`release(err)`), so a failed COPY
 * leaves no trace.
 */
export async function storeBatch(pool: Pool, pushes: PreparedPush[], options: StoreBatchOptions): Promise<StoreBatchResult> {
  const lease = await checkOut(pool).catch((err: unknown) => {
    throw connectFailure(err);
  });
  const { client } = lease;
  // A server gone without a FIN or RST (failover, partition) leaves a half-open socket. Keepalive
  // (createPool) ends a statement waiting for its answer, but not a COPY still writing into it: that
  // waits for TCP's retransmissions to give up (~15 min), while BullMQ keeps renewing the jobs'
  // locks. Closing the socket rejects whatever is in flight.
  let overdue = false;
  const deadline = options.deadlineMs
    ? setTimeout(() => {
        overdue = true;
        lease.destroy();
      }, options.deadlineMs)
    : undefined;
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
    const expired = new Set<string>();
    for (const [window, group] of ledgerGroups(pushes)) {
      const ledger = await client.query<{ push_id: string; expired: boolean }>(INSERT_LEDGER, [
        plainArray(group.map((p) => p.pushId)),
        plainArray(group.map((p) => p.collectorId)),
        plainArray(group.map((p) => p.receivedIso)),
        plainArray(group.map((p) => p.split.slices.length)),
        plainArray(group.map((p) => p.checksum)),
        window,
        options.retentionDays,
      ]);
      for (const r of ledger.rows) (r.expired ? expired : fresh).add(r.push_id);
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
    const unknown = { pushes: 0, collectorIds: [] as string[] };
    const unknownIds = new Set<string>();
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
        plainArray(r.snapshotAts),
      ]);
      rollupMs = lap();
      // Last before COMMIT: the collector rows stay locked only for this statement and the COMMIT,
      // so concurrent batches of the same collectors overlap everywhere else.
      statuses = await updateCollectors(client, toStore);
      stateMs = lap();
      // UPDATE … RETURNING answers every collector of the batch that has a row.
      const known = new Set(statuses.map((s) => s.id));
      for (const p of toStore) {
        if (known.has(p.collectorId)) continue;
        unknown.pushes++;
        if (!unknownIds.has(p.collectorId)) unknown.collectorIds.push(p.collectorId);
        unknownIds.add(p.collectorId);
      }
    }
    await client.query('COMMIT');
    clearTimeout(deadline);
    const commitMs = lap();
    lease.release();
    const expiredCount = pushes.filter((p) => expired.has(p.pushId)).length;
    return {
      stored: toStore.length,
      duplicates: pushes.length - toStore.length - expiredCount,
      expired: expiredCount,
      rows,
      bytes,
      copyMs,
      phases: { ledger: ledgerMs, copy: copyMs, state: stateMs, rollup: rollupMs, commit: commitMs },
      storedIds: toStore.map((p) => p.pushId),
      expiredIds: [...expired],
      statuses,
      unknown,
    };
  } catch (err) {
    clearTimeout(deadline);
    // A lost session has nothing left to roll back (and a half-open one would never answer).
    if (!lease.lost) await client.query('ROLLBACK').catch(() => undefined);
    lease.release(err);
    if (overdue) throw new BatchDeadlineError(options.deadlineMs!, err);
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
