import { isConnectionError, type Logger } from '@pga/logger';
import { isDatabaseUnavailable, pgErrorCode } from '@pga/db';
import { classifyError, isConnectFailure } from './classify-error';
import type { PreparedPush } from './prepare-push';
import { PoisonPushError } from './prepare-push';
import type { StoreBatchResult } from './store-batch';

export interface BatcherOptions {
  maxRows: number;
  maxBytes: number;
  windowMs: number;
  parallelism: number;
  /** Transient errors are retried with backoff for at most this long. */
  retryMaxMs: number;
  /** Stores pushes in one transaction (storeBatch bound to the pool). */
  store: (pushes: PreparedPush[]) => Promise<StoreBatchResult>;
  /** Runs after COMMIT, before the jobs are resolved (publishing, metrics, the test pause). */
  afterCommit: (result: StoreBatchResult, jobs: number) => Promise<void>;
  onRetry: (err: unknown, attempt: number, delayMs: number) => void;
  logger: Logger;
}

export interface JobOutcome {
  pushes: number;
  stored: number;
  duplicates: number;
  /** Not stored because accepted longer ago than the retention (METRICS_RETENTION_DAYS). */
  expired: number;
}

interface Entry {
  pushes: PreparedPush[];
  rows: number;
  size: number;
  resolve: (outcome: JobOutcome) => void;
  reject: (err: unknown) => void;
}

interface Batch {
  entries: Entry[];
  rows: number;
  size: number;
  timer: NodeJS.Timeout | null;
  /** The window passed; sealed as soon as a transaction slot is free. */
  due: boolean;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A statement cancelled by statement_timeout (or a cancel request): a smaller batch may pass. */
const tooSlow = (err: unknown) => pgErrorCode(err) === '57014';

/**
 * Worth storing job by job and push by push: a data error (poison), a server error that is not about
 * the connection (fatal) — it may concern some rows only, e.g. a trigger that refuses one
 * collector's: failing the whole batch stalled every collector, then dead-lettered their pushes —,
 * or a transient error one push can cause (a batch past its deadline, 53200: `isEveryones`).
 */
const isolable = (err: unknown) => !isConnectFailure(err) && (classifyError(err) !== 'transient' || !isEveryones(err));

/**
 * A job's failure that is nobody's data: the batch holding it saw PostgreSQL unreachable for longer
 * than the in-process retries, refusing the writer's log-in (a wrong password after a rotation:
 * `isConnectFailure`), or refusing the writer for the pushes of three collectors and not one store (a
 * privilege revoked, a table gone: `isEveryones`). The push worker puts such a job back to wait without using up one of its attempts: a long
 * outage used to turn every held job into a dead letter after its ten attempts (~110 minutes; a
 * revoked privilege, ~9 minutes for the whole queue). Its `cause` is the error itself.
 */
export class EveryonesFailure extends Error {
  constructor(cause: unknown) {
    super(describe(cause), { cause });
    this.name = 'EveryonesFailure';
  }
}

/**
 * SQLSTATEs that say PostgreSQL is out of reach or refuses the writer as such: connection exceptions
 * (08), authentication (28: a password rotated without the writer's DATABASE_URL), a shutdown or
 * crash (57P01–03), too many connections (53300), a full disk (53100), a lock not granted in time
 * (55P03: a long DDL), read-only during a failover (25006), and the writer's objects or rights gone
 * (3D000 database, 3F000 schema, 42501 privilege, 42P01 table, 42703 column, 42883 function).
 */
const UNAVAILABLE = /^(08...|28...|57P0[123]|53300|53100|55P03|25006|3D000|3F000|42501|42P01|42703|42883)$/;

/**
 * Whether a failure is everyone's, so that a batch stops on it and its jobs wait without using up
 * an attempt: PostgreSQL out of reach or refusing the writer (UNAVAILABLE; a socket, DNS or TLS error;
 * node-postgres's errors without a SQLSTATE for a server gone; any error opening the batch's
 * connection, before a push was sent: `isConnectFailure`). Not what one push can cause: a
 * statement timeout (57014), a batch past its deadline (BatchDeadlineError), out of memory (53200),
 * a serialization failure or deadlock (40001, 40P01), a trigger's error (P0001) — such a job must
 * still end as a dead letter after its attempts (put back without one, it came back for ever), and
 * the other jobs of its batch are stored.
 */
export function isEveryones(err: unknown): boolean {
  if (err instanceof Error && err.name === 'BatchDeadlineError') return false;
  if (isConnectFailure(err)) return true;
  if (isConnectionError(err)) return true;
  const code = pgErrorCode(err);
  if (code === undefined) return isDatabaseUnavailable(err);
  return UNAVAILABLE.test(code);
}

/** A data error becomes a PoisonPushError (dead-lettered at once); anything else as it is. */
const asFinal = (err: unknown) =>
  classifyError(err) === 'poison' && !(err instanceof PoisonPushError) ? new PoisonPushError(describe(err)) : err;

/**
 * What storing one batch in parts has seen: stores that succeeded; the collectors of the pushes that
 * failed alone with a fatal error; a transient error whose retries ran out (PostgreSQL away). A
 * fatal error for pushes of three or more collectors and not one success is a failure of everything
 * (a privilege revoked, a table gone), not of some rows (a trigger refusing one collector's — its
 * failed jobs, retried together, may well come first): the remaining jobs fail at once instead of
 * each push being tried alone. After a transient error too: the rest waits for BullMQ's retry.
 */
interface Probe {
  stored: number;
  failedCollectors: Set<string>;
  fatal?: unknown;
  transient?: unknown;
}
const newProbe = (): Probe => ({ stored: 0, failedCollectors: new Set() });
const SYSTEMIC_COLLECTORS = 3;
/** Records a failure of `pushes` stored on their own (all of one collector's, if it is to count). */
const count = (probe: Probe, err: unknown, pushes: readonly PreparedPush[]) => {
  const kind = classifyError(err);
  if (kind === 'poison') return;
  // PostgreSQL away, or refusing the log-in: the rest of the batch is not tried now. A transient error one push can cause
  // (a statement timeout, a deadline, 53200) is that push's own, like a fatal one.
  if ((kind === 'transient' || isConnectFailure(err)) && isEveryones(err)) {
    probe.transient ??= err;
    return;
  }
  probe.fatal ??= err;
  const collectors = new Set(pushes.map((p) => p.collectorId));
  if (collectors.size === 1) probe.failedCollectors.add(pushes[0]!.collectorId);
};
/** Why the remaining jobs fail without being tried, or undefined while they are worth trying. */
const giveUp = (probe: Probe): unknown =>
  probe.transient ?? (probe.stored === 0 && probe.failedCollectors.size >= SYSTEMIC_COLLECTORS ? probe.fatal : undefined);

/**
 * Packs the pushes of many concurrently held BullMQ jobs into few large COPY transactions: a batch is
 * sealed at maxRows / maxBytes, or windowMs after its first job once a transaction slot is free, and
 * at most `parallelism` batches commit at once. A job's promise settles only after the transaction holding its pushes committed
 * (or failed for good). A job is never split across batches.
 */
export function createBatcher(options: BatcherOptions) {
  let open: Batch | null = null;
  const sealed: Batch[] = [];
  let running = 0;
  let idleWaiters: (() => void)[] = [];

  const seal = () => {
    if (!open) return;
    if (open.timer) clearTimeout(open.timer);
    sealed.push(open);
    open = null;
    pump();
  };

  const pump = () => {
    // A batch whose window passed while every slot was busy is sealed as soon as one frees up: under
    // load the open batch keeps growing instead of queueing many small sealed batches behind the
    // running ones, so each transaction's fixed cost is spread over more pushes (adaptive batching).
    if (open?.due && running < options.parallelism && sealed.length === 0) seal();
    while (running < options.parallelism && sealed.length > 0) {
      const batch = sealed.shift()!;
      running++;
      void runBatch(batch.entries).finally(() => {
        running--;
        pump();
        if (running === 0 && sealed.length === 0 && !open) {
          const waiters = idleWaiters;
          idleWaiters = [];
          for (const w of waiters) w();
        }
      });
    }
  };

  /**
   * Stores with in-process retry of transient errors (exponential backoff, capped at 5 s). A
   * statement timeout (57014) of more than one push is not retried at the same size: the caller
   * halves the batch (a role's statement_timeout below what a full batch takes stored nothing, ever).
   */
  const storeWithRetry = async (pushes: PreparedPush[]): Promise<StoreBatchResult> => {
    const started = Date.now();
    let delay = 100;
    for (let attempt = 1; ; attempt++) {
      try {
        return await options.store(pushes);
      } catch (err) {
        if (tooSlow(err) && pushes.length > 1) throw err;
        if (classifyError(err) !== 'transient' || Date.now() - started + delay > options.retryMaxMs) throw err;
        options.onRetry(err, attempt, delay);
        await sleep(delay);
        delay = Math.min(5000, delay * 2);
      }
    }
  };

  const settle = (entries: Entry[], result: StoreBatchResult) => {
    // A push id counts as stored for the first job (in batch order) that carried it.
    const stored = new Set(result.storedIds);
    const expired = new Set(result.expiredIds);
    for (const e of entries) {
      let n = 0;
      let old = 0;
      for (const p of e.pushes) {
        if (stored.delete(p.pushId)) n++;
        else if (expired.has(p.pushId)) old++;
      }
      e.resolve({ pushes: e.pushes.length, stored: n, duplicates: e.pushes.length - n - old, expired: old });
    }
  };

  /**
   * Stores a sealed batch (`run`), holding back its jobs' failures until every part was tried: when
   * the batch turned out to fail for everyone (`giveUp`, for a reason `isEveryones` accepts), each
   * job that failed for another reason than its data fails with EveryonesFailure — also those tried
   * before that was clear.
   */
  const runBatch = async (entries: Entry[]): Promise<void> => {
    const probe = newProbe();
    const failed: [Entry, unknown][] = [];
    await run(
      entries.map((e) => ({ ...e, reject: (err: unknown) => void failed.push([e, err]) })),
      probe,
    );
    const reason = giveUp(probe);
    const everyone = reason !== undefined && isEveryones(reason);
    for (const [e, err] of failed) e.reject(everyone && classifyError(err) !== 'poison' ? new EveryonesFailure(err) : err);
  };

  /**
   * Stores a sealed batch; if it fails, in halves (statement timeout) or job by job and push by push
   * (a data error, or a server error that may concern some rows only). `probe` is shared by the parts
   * of one batch.
   */
  const run = async (entries: Entry[], probe: Probe): Promise<void> => {
    const stop = giveUp(probe);
    if (stop !== undefined) {
      for (const e of entries) e.reject(stop);
      return;
    }
    const all = entries.flatMap((e) => e.pushes);
    let failed: unknown;
    try {
      const result = await storeWithRetry(all);
      await options.afterCommit(result, entries.length);
      probe.stored++;
      settle(entries, result);
      return;
    } catch (err) {
      failed = err;
    }
    if (tooSlow(failed) && entries.length > 1) {
      // Over the statement timeout: the same batch would be again. Each half on its own, down to one job.
      options.logger.warn(
        { pushes: all.length, jobs: entries.length, err: describe(failed) },
        'batch over the statement timeout; storing it in halves',
      );
      const half = Math.ceil(entries.length / 2);
      await run(entries.slice(0, half), probe);
      await run(entries.slice(half), probe);
      return;
    }
    if (!(isolable(failed) || tooSlow(failed)) || all.length === 1) {
      count(probe, failed, all);
      for (const e of entries) e.reject(asFinal(failed));
      return;
    }
    options.logger.warn(
      { pushes: all.length, jobs: entries.length, err: describe(failed) },
      classifyError(failed) === 'poison'
        ? 'batch rejected as data error; isolating pushes'
        : tooSlow(failed)
          ? 'job over the statement timeout; storing its pushes one by one'
          : 'batch failed; storing its jobs and pushes one by one, so one that fails does not hold up the others',
    );
    // Isolation: each job alone, then each push of a failing job alone, so good pushes commit and only
    // the jobs carrying a bad push fail (their stored pushes dedupe via the ledger on a retry). A
    // batch of one job was just tried alone: straight to its pushes.
    if (entries.length === 1) return runPushes(entries[0]!, probe);
    for (const e of entries) await runIsolated(e, probe);
  };

  const runIsolated = async (e: Entry, probe: Probe): Promise<void> => {
    const stop = giveUp(probe);
    if (stop !== undefined) return e.reject(stop);
    try {
      const result = await storeWithRetry(e.pushes);
      await options.afterCommit(result, 1);
      probe.stored++;
      settle([e], result);
      return;
    } catch (err) {
      if (!(isolable(err) || tooSlow(err)) || e.pushes.length === 1) {
        count(probe, err, e.pushes);
        return e.reject(asFinal(err));
      }
    }
    await runPushes(e, probe);
  };

  /** Each push of a job alone: the good ones commit, and the job fails if any did not. */
  const runPushes = async (e: Entry, probe: Probe): Promise<void> => {
    const bad: string[] = [];
    const storedIds: string[] = [];
    const expiredIds: string[] = [];
    let failure: unknown = null;
    for (const p of e.pushes) {
      try {
        const result = await storeWithRetry([p]);
        await options.afterCommit(result, 0);
        probe.stored++;
        storedIds.push(...result.storedIds);
        expiredIds.push(...result.expiredIds);
      } catch (err) {
        count(probe, err, [p]);
        if (classifyError(err) === 'poison') bad.push(`${p.pushId}: ${describe(err)}`);
        else failure = err;
        // PostgreSQL away (its retries ran out), or the same failure for everything: the rest of
        // the job is tried again with it, not one push after another now.
        if (giveUp(probe) !== undefined) break;
      }
    }
    // A push that failed for another reason than its data (PostgreSQL went away for longer than the
    // retries; a fatal error such as a trigger refusing one collector's rows) is not poison: the job
    // fails retryably, so BullMQ tries it again (stored pushes dedupe via the ledger) and it is
    // dead-lettered only if it still fails after its attempts.
    if (failure) e.reject(failure);
    else if (bad.length) e.reject(new PoisonPushError(`unstorable push(es): ${bad.join('; ')}`));
    else {
      const phases = { ledger: 0, copy: 0, state: 0, rollup: 0, commit: 0 };
      settle([e], {
        stored: 0,
        duplicates: 0,
        expired: 0,
        rows: 0,
        bytes: 0,
        copyMs: 0,
        phases,
        statuses: [],
        unknown: { pushes: 0, collectorIds: [] },
        storedIds,
        expiredIds,
      });
    }
  };

  return {
    /** Adds one job's pushes; resolves after they are committed. */
    submit(pushes: PreparedPush[]): Promise<JobOutcome> {
      return new Promise<JobOutcome>((resolve, reject) => {
        let rows = 0;
        let size = 0;
        for (const p of pushes) {
          rows += p.split.slices.length;
          size += p.size;
        }
        if (open && (open.rows + rows > options.maxRows || open.size + size > options.maxBytes)) seal();
        if (!open) {
          const batch: Batch = { entries: [], rows: 0, size: 0, timer: null, due: false };
          batch.timer = setTimeout(() => {
            if (open !== batch) return;
            batch.timer = null;
            batch.due = true;
            if (running < options.parallelism && sealed.length === 0) seal();
          }, options.windowMs);
          open = batch;
        }
        open.entries.push({ pushes, rows, size, resolve, reject });
        open.rows += rows;
        open.size += size;
        if (open.rows >= options.maxRows || open.size >= options.maxBytes) seal();
      });
    },
    /** Seals the open batch and resolves when nothing is in flight (SIGTERM: finish the batch). */
    drain(): Promise<void> {
      seal();
      if (running === 0 && sealed.length === 0) return Promise.resolve();
      return new Promise((resolve) => idleWaiters.push(resolve));
    },
    inFlight: () => running + sealed.length + (open ? 1 : 0),
  };
}

export type Batcher = ReturnType<typeof createBatcher>;

function describe(err: unknown): string {
  const code = typeof err === 'object' && err && 'code' in err ? String((err as { code: unknown }).code) : undefined;
  const message = err instanceof Error ? err.message : String(err);
  return code ? `${code} ${message}` : message;
}
