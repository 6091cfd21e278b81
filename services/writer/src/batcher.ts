import type { Logger } from '@pga/logger';
import { classifyError } from './classify-error';
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
      void run(batch.entries).finally(() => {
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

  /** Stores with in-process retry of transient errors (exponential backoff, capped at 5 s). */
  const storeWithRetry = async (pushes: PreparedPush[]): Promise<StoreBatchResult> => {
    const started = Date.now();
    let delay = 100;
    for (let attempt = 1; ; attempt++) {
      try {
        return await options.store(pushes);
      } catch (err) {
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

  const run = async (entries: Entry[]): Promise<void> => {
    const all = entries.flatMap((e) => e.pushes);
    try {
      const result = await storeWithRetry(all);
      await options.afterCommit(result, entries.length);
      settle(entries, result);
      return;
    } catch (err) {
      if (classifyError(err) !== 'poison' || all.length === 1) {
        const final =
          classifyError(err) === 'poison' && !(err instanceof PoisonPushError) ? new PoisonPushError(describe(err)) : err;
        for (const e of entries) e.reject(final);
        return;
      }
      options.logger.warn(
        { pushes: all.length, jobs: entries.length, err: describe(err) },
        'batch rejected as data error; isolating pushes',
      );
    }
    // Isolation: each job alone, then each push of a failing job alone, so good pushes commit and only
    // the jobs carrying a bad push fail (their stored pushes dedupe via the ledger on an admin retry).
    for (const e of entries) await runIsolated(e);
  };

  const runIsolated = async (e: Entry): Promise<void> => {
    try {
      const result = await storeWithRetry(e.pushes);
      await options.afterCommit(result, 1);
      settle([e], result);
      return;
    } catch (err) {
      if (classifyError(err) !== 'poison' || e.pushes.length === 1) {
        e.reject(classifyError(err) === 'poison' && !(err instanceof PoisonPushError) ? new PoisonPushError(describe(err)) : err);
        return;
      }
    }
    const bad: string[] = [];
    const storedIds: string[] = [];
    const expiredIds: string[] = [];
    let failure: unknown = null;
    for (const p of e.pushes) {
      try {
        const result = await storeWithRetry([p]);
        await options.afterCommit(result, 0);
        storedIds.push(...result.storedIds);
        expiredIds.push(...result.expiredIds);
      } catch (err) {
        if (classifyError(err) === 'poison') bad.push(`${p.pushId}: ${describe(err)}`);
        else failure = err;
      }
    }
    // A push that failed for another reason (PostgreSQL went away for longer than the retries) is
    // not poison: the job fails retryably, so BullMQ tries it again (stored pushes dedupe via the
    // ledger) and it is dead-lettered only once just the bad pushes are left to fail.
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
