import { AsyncFifoQueue, type Job, type Worker } from 'bullmq';
import type { Logger } from '@pga/logger';

/**
 * The members of BullMQ 5's `Worker` that its main loop uses. They are private in BullMQ's typings,
 * so `installPromptLoop` checks them at run time and keeps BullMQ's own loop if any is missing.
 */
interface WorkerInternals {
  id: string;
  closing: Promise<void> | undefined;
  paused: boolean;
  waiting: Promise<number> | null;
  blockUntil: number;
  _concurrency: number;
  opts: { runRetryDelay?: number };
  retryIfFailed<T>(fn: () => Promise<T>, opts: { delayInMs?: number; onlyEmitError?: boolean }): Promise<T | undefined>;
  _getNextJob(client: unknown, bclient: unknown, token: string, opts: { block: boolean }): Promise<Job | undefined>;
  isRateLimited(): boolean;
  waitForRateLimit(): Promise<void>;
  processJob(job: Job, token: string, fetchNextCallback: () => boolean): Promise<void | Job>;
  mainLoop(client: unknown, bclient: unknown): Promise<void>;
}

const REQUIRED_METHODS = ['retryIfFailed', '_getNextJob', 'isRateLimited', 'waitForRateLimit', 'processJob', 'mainLoop'] as const;

/**
 * BullMQ's main loop (bullmq 5.81 `Worker.mainLoop`) with one change: a job starts processing as soon
 * as it is fetched.
 *
 * BullMQ fetches jobs one round trip at a time and, while the queue is not empty, keeps fetching
 * until `concurrency` jobs are held; only then does it start the ones it fetched, one per loop turn.
 * The writer holds up to 2,048 jobs (each waits for its batch to commit), so under steady load
 * fetched jobs waited for the fetching to stop. Measured in the bench's ingest-e2e (open loop at
 * 50 % of the closed-loop maximum, 2,069 pushes/s): fetched → started p50 24 ms, p99 130 ms; at 75 %,
 * p99 566 ms — a large share of the "200 → row visible" freshness.
 *
 * Here the fetch promise handed to the loop's FIFO starts the job's processing when it resolves and
 * puts the processing promise in the FIFO (so it counts against `concurrency` exactly as before).
 * Likewise the job BullMQ fetches while completing one (its "fetch next", one round trip for both)
 * starts at once instead of waiting in the FIFO for the fetching to stop. Everything else (blocking
 * wait, rate limit, locks, events) is BullMQ's.
 */
async function promptMainLoop(this: WorkerInternals, client: unknown, bclient: unknown): Promise<void> {
  const fifo = new AsyncFifoQueue<undefined>();
  let tokenPostfix = 0;
  const fetchNext = () => fifo.numTotal() <= this._concurrency;
  // Processes a job; the job fetched with its completion, if any, starts at once the same way.
  const start = (job: Job): Promise<undefined> =>
    this.processJob(job, job.token!, fetchNext).then((next) => {
      if (next) fifo.add(start(next));
      return undefined;
    });
  while ((!this.closing && !this.paused) || fifo.numTotal() > 0) {
    while (!this.closing && !this.paused && !this.waiting && fifo.numTotal() < this._concurrency && !this.isRateLimited()) {
      const token = `${this.id}:${tokenPostfix++}`;
      const fetched = this.retryIfFailed(() => this._getNextJob(client, bclient, token, { block: true }), {
        delayInMs: this.opts.runRetryDelay,
        onlyEmitError: true,
      });
      // The change: start the job at once; the FIFO gets its processing, and `undefined` for the fetch.
      // At once = after this turn of the event loop, in which the next fetch is sent: the job's own
      // work (parsing a job of ~100 pushes takes milliseconds) then overlaps that round trip instead
      // of delaying it. Started inside the fetch chain, it slowed fetching: two e2e runs committed
      // 3,449 and 3,177 pushes/s, against 3,799 – 4,089 with BullMQ's loop in the same session.
      fifo.add(
        fetched.then((job) => {
          if (job) fifo.add(new Promise<Job>((resolve) => setImmediate(resolve, job)).then(start));
          return undefined;
        }),
      );
      if (this.waiting && fifo.numTotal() > 1) break;
      const job = await fetched;
      if (!job && fifo.numTotal() > 1) break;
      if (this.blockUntil) break;
    }
    // Every FIFO entry resolves to undefined (jobs start where they are fetched): wait for a fetch
    // or a job to end, drop those that ended meanwhile, as BullMQ's loop does, then fetch again.
    do await fifo.fetch();
    while (fifo.numQueued() > 0);
    await this.waitForRateLimit();
  }
}

/**
 * Replaces `worker`'s main loop with `promptMainLoop` before `worker.run()`. If this BullMQ's Worker
 * lacks a member the loop uses, or its loop is not the one this replaces, BullMQ's loop stays
 * (logged once): correct, only slower to start fetched jobs.
 */
export function installPromptLoop(worker: Worker, logger: Logger): boolean {
  const internals = worker as unknown as WorkerInternals;
  const missing = REQUIRED_METHODS.filter((m) => typeof internals[m] !== 'function');
  const stock = typeof internals.mainLoop === 'function' ? internals.mainLoop.toString() : '';
  if (missing.length > 0 || !('waiting' in worker) || !stock.includes('asyncFifoQueue.add(fetchedJob)')) {
    logger.warn({ missing }, "BullMQ's worker loop is not the expected one; keeping it (jobs start later under load)");
    return false;
  }
  Object.defineProperty(worker, 'mainLoop', { value: promptMainLoop, configurable: true, writable: true });
  return true;
}

/**
 * A failed job fetch waits `ms` before its error reaches BullMQ's loop. BullMQ retries a fetch that
 * failed with anything but a connection error at once: with Redis up but refusing writes (out of
 * memory, a read-only replica), each fetch of a due job failed in microseconds, and the loop spun a
 * core and emitted tens of thousands of errors a second. Fetches that succeed are untouched.
 */
export function pauseAfterFailedFetch(worker: Worker, ms = 1000): void {
  const internals = worker as unknown as WorkerInternals;
  if (typeof internals._getNextJob !== 'function') return;
  const fetch = internals._getNextJob.bind(worker);
  internals._getNextJob = async (...args) => {
    try {
      return await fetch(...args);
    } catch (err) {
      await new Promise((resolve) => setTimeout(resolve, ms));
      throw err;
    }
  };
}
