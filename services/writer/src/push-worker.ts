import { DelayedError, Queue, UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger, OutageLog } from '@pga/logger';
import { EveryonesFailure, type Batcher, type JobOutcome } from './batcher';
import type { WriterMetrics } from './metrics';
import { PoisonPushError, preparePushJob } from './prepare-push';
import { installPromptLoop, pauseAfterFailedFetch } from './prompt-worker';
import { createFailureLog } from './failure-log';
import { dropPushBlobs, loadPushBlobs } from './push-blobs';

/** After a job found gone from Redis, the others found gone within this long are one summary line. */
const MISSING_SUMMARY_MS = 5000;

export interface PushWorkerOptions {
  connection: Redis;
  queueName: string;
  prefix: string;
  /** Most jobs held at once; the worker holds fewer when jobs are large (see `heldBudget`). */
  maxJobs: number;
  /** What held jobs may add up to: a few batches' worth of rows and of bytes. */
  heldBudget: { rows: number; bytes: number };
  lockDurationMs: number;
  stalledIntervalMs: number;
  batcher: Batcher;
  metrics: WriterMetrics;
  logger: Logger;
  /** Where connection errors of the worker's and the queue's Redis connections go. */
  redisOutage: OutageLog;
  /** How long a dead letter stays for the admin service to list and retry: the metrics retention. */
  deadLetterAgeSeconds: number;
  /** redis-keys `pushBlobs`: the index of large-push bodies (deleted from it with their blob). */
  pushBlobsKey: string;
  /** A job failing for everyone's reason is put back without using up an attempt until it is this old (ms). */
  putBackMaxMs: number;
}

/**
 * The BullMQ consumer of the edge's PushJobs. Each job is held (its lock renewed by BullMQ) until the
 * batch containing it has committed; only then does the processor return and BullMQ mark it
 * completed. Poison (invalid job, body not matching its checksum, data PostgreSQL rejects) fails once
 * with UnrecoverableError into the queue's failed set, which the admin service lists and retries.
 */
export function createPushWorker(o: PushWorkerOptions) {
  const log = o.logger.child({ module: 'push-worker' });
  let heldBytes = 0;
  // Running means of a job's rows and bytes (exponentially weighted, the newest job weighs 1/16).
  let meanRows = 0;
  let meanBytes = 0;
  /**
   * Enqueue time (`job.timestamp`) of each job this process holds, from its processor's start until
   * it returns or throws: an active job is not committed yet, and the queue lag must count it (during a
   * PostgreSQL outage every job may be held, retrying, with none waiting). Keyed by the Job object, so
   * that a job redelivered here while its stalled first run still goes is counted until both end.
   * Its size is the number of jobs held.
   */
  const heldSince = new Map<Job, number>();
  /**
   * The large-push bodies (blobs) a job read, deleted once BullMQ has marked it completed — not
   * before: a writer that dies between its commit and that mark has the job redelivered, and the
   * redelivery needs the body (the ledger then skips it). A dead letter keeps its blobs for a retry.
   */
  const blobsOf = new WeakMap<Job, string[]>();

  /**
   * BullMQ fetches jobs one at a time, up to its concurrency. A fixed job count capped batches at
   * (count × pushes per job), and the edge packs anything from 1 to PACK_MAX_PUSHES pushes per job
   * depending on its load: with 8-push jobs, 256 held jobs made transactions of ~700 pushes, and
   * their fixed costs (ledger statement, collector rows, COMMIT) cost PostgreSQL 186 µs of CPU per
   * push against 134 µs with ~2,000-push transactions (writer-cost.ts). So the count follows the
   * job size: as many jobs as fill the budget (the batches that can commit at once, plus two to
   * fill meanwhile), never more than maxJobs.
   */
  const adapt = (rows: number, bytes: number) => {
    meanRows = meanRows === 0 ? rows : meanRows + (rows - meanRows) / 16;
    meanBytes = meanBytes === 0 ? bytes : meanBytes + (bytes - meanBytes) / 16;
    const fit = Math.min(o.heldBudget.rows / Math.max(1, meanRows), o.heldBudget.bytes / Math.max(1, meanBytes));
    const target = Math.max(1, Math.min(o.maxJobs, Math.floor(fit)));
    if (target !== worker.concurrency) {
      worker.concurrency = target;
      o.metrics.jobConcurrency.set(target);
    }
  };

  const processJob = async (job: Job, token?: string): Promise<JobOutcome> => {
    // A job whose lock was lost is delivered again: a loss of this delivery's lock is news again
    // (logged and counted), while the old delivery's end errors stay expected (lostLocks keeps the id).
    const lostBefore = job.id === undefined ? undefined : lostLocks.get(job.id);
    if (lostBefore) lostBefore.redelivered = true;
    heldSince.set(job, job.timestamp);
    o.metrics.inFlightJobs.set(heldSince.size);
    let bytes = 0;
    try {
      const blobs = await loadPushBlobs(o.connection, job.data);
      const { pushes, poison } = preparePushJob(job.data, blobs);
      if (blobs.size > 0) blobsOf.set(job, [...blobs.keys()]);
      // The parsed job (every body as base64 text) would otherwise stay on the heap until the batch
      // commits, to be copied by each young-generation collection on the way. BullMQ reads nothing
      // of it to complete or fail the job, and a retry fetches the job from Redis again.
      job.data = null;
      let rows = 0;
      for (const p of pushes) {
        rows += p.split.slices.length;
        bytes += p.body.length;
      }
      heldBytes += bytes;
      o.metrics.heldBytes.set(heldBytes);
      adapt(rows, bytes);
      const outcome = pushes.length > 0 ? await o.batcher.submit(pushes) : undefined;
      if (poison.length > 0) {
        // The job's good pushes are committed (a retry of this dead letter finds them in the ledger).
        throw new PoisonPushError(
          `${poison.length} of ${poison.length + pushes.length} pushes can never be stored` +
            `${outcome ? ` (the other ${outcome.pushes} were: ${outcome.stored} stored, ${outcome.duplicates} already there${outcome.expired ? `, ${outcome.expired} past retention` : ''})` : ''}: ` +
            poison.join('; '),
        );
      }
      return outcome!;
    } catch (err) {
      if (err instanceof PoisonPushError) throw new UnrecoverableError(err.message);
      // Put back until the job is `putBackMaxMs` old; after that it uses up its attempts as before
      // (a push that itself brings PostgreSQL down must not come back for ever).
      if (err instanceof EveryonesFailure && token !== undefined && Date.now() - job.timestamp < o.putBackMaxMs) {
        // Not this job's fault: back to wait, its attempts untouched, for 1 s, then 2, 4 … 60 s as
        // it keeps coming back (BullMQ counts the starts). Nothing becomes a dead letter for it.
        const waitMs = Math.min(PUT_BACK_MAX_MS, 1000 * 2 ** Math.min(6, Math.max(0, job.attemptsStarted - 1)));
        putBack(job.id);
        await job.moveToDelayed(Date.now() + waitMs, token);
        o.metrics.outageDelays.inc();
        failures.report(
          'warn',
          err.cause,
          { jobId: job.id, waitMs },
          'push job put back to wait: PostgreSQL fails for every push (no attempt used up)',
        );
        throw new DelayedError();
      }
      throw err;
    } finally {
      heldSince.delete(job);
      heldBytes -= bytes;
      o.metrics.inFlightJobs.set(heldSince.size);
      o.metrics.heldBytes.set(heldBytes);
    }
  };

  /** Longest wait of a job put back after a failure that is everyone's. */
  const PUT_BACK_MAX_MS = 60_000;
  /** Jobs put back in the last lock duration (until when): a failed renewal of their lock is expected. */
  const justPutBack = new Map<string, number>();
  const putBack = (id: string | undefined) => {
    if (id === undefined) return;
    const until = Date.now() + o.lockDurationMs;
    justPutBack.set(id, until);
    setTimeout(() => {
      if (justPutBack.get(id) === until) justPutBack.delete(id);
    }, o.lockDurationMs).unref();
  };
  // Until the first jobs show their size, hold few: they may be large.
  const initialJobs = Math.min(o.maxJobs, 16);
  o.metrics.jobConcurrency.set(initialJobs);
  const worker = new Worker(o.queueName, processJob, {
    connection: o.connection,
    prefix: o.prefix,
    concurrency: initialJobs,
    autorun: false,
    lockDuration: o.lockDurationMs,
    stalledInterval: o.stalledIntervalMs,
    // A job whose writer died is redelivered (the ledger makes that harmless); only a job that kills
    // writers again and again ends in the failed set.
    maxStalledCount: 10,
    // Completed jobs carry whole push bodies: keep only a few (unless the job options say otherwise).
    removeOnComplete: { age: 600, count: 200 },
    // Dead letters stay for the admin service to list and retry as long as their pushes could still
    // be stored (METRICS_RETENTION_DAYS; older ones the ledger refuses anyway). The edge sets no
    // removeOnFail of its own on its jobs, so this applies (a job option would win).
    removeOnFail: { age: o.deadLetterAgeSeconds },
  });
  installPromptLoop(worker, log);
  pauseAfterFailedFetch(worker);
  // A job whose keys are gone when it finishes (Redis emptied, or a failover to a replica without
  // it): BullMQ reports it twice (marking it completed, then failed), each with a stack. One line
  // for the first such job, then one summary of the others gone within MISSING_SUMMARY_MS: a
  // FLUSHALL under a writer holding its 2,048 jobs wrote two lines per job (the two reports of
  // different jobs interleave, so the last id alone did not catch the second).
  const reportedMissing = new Set<string>();
  let missingMore = 0;
  let missingTimer: NodeJS.Timeout | undefined;
  const jobGone = (jobId: string) => {
    if (reportedMissing.has(jobId)) return;
    if (reportedMissing.size >= 10_000) reportedMissing.clear();
    reportedMissing.add(jobId);
    if (missingTimer) return void missingMore++;
    log.warn(
      { jobId },
      `job ${jobId} was gone from Redis when it finished (Redis emptied, or a failover to a replica without it); what it committed stays stored`,
    );
    missingTimer = setTimeout(() => {
      missingTimer = undefined;
      // A job's two reports come milliseconds apart; ids start again at 1 after a FLUSHALL.
      reportedMissing.clear();
      if (missingMore > 0)
        log.warn(
          { jobs: missingMore },
          `${missingMore} more jobs were gone from Redis when they finished; what they committed stays stored`,
        );
      missingMore = 0;
    }, MISSING_SUMMARY_MS);
    missingTimer.unref();
  };
  /**
   * Held jobs whose lock this process lost, when that was last seen (ms), and whether the job was
   * delivered again since. Redis refusing writes (MISCONF: its disk full under the AOF) or silent for
   * longer than the lock duration, or this process stalling as long, while the jobs wait for
   * PostgreSQL (its own disk full): every renewal fails from then on, the stalled check puts the jobs
   * back in the queue, and they are stored once (the ledger skips the second delivery).
   * BullMQ said so as one error per job at every renewal round (seconds apart), then once or twice
   * more per job as it finished ("Missing lock for job N. moveToFinished", or "Lock mismatch …" when
   * its redelivery holds it): a writer holding 2,048
   * jobs wrote 45,000 warnings with stacks in five minutes of a full disk. Now one line per round
   * that loses locks, and nothing more about those jobs — until a job is delivered again: a loss
   * of its next delivery's lock is logged and counted again (a loss recurring at every delivery
   * stayed silent for good when the memory only refreshed).
   */
  const lostLocks = new Map<string, { at: number; redelivered: boolean }>();
  /** How long a lost lock's later errors stay expected after it was last seen failing. */
  const LOST_LOCK_MEMORY_MS = Math.max(10 * 60_000, 4 * o.lockDurationMs);
  worker.on('lockRenewalFailed', (jobIds) => {
    const now = Date.now();
    for (const [id, seen] of lostLocks) if (now - seen.at > LOST_LOCK_MEMORY_MS) lostLocks.delete(id);
    const lost = jobIds.filter((id) => !justPutBack.has(id));
    const fresh = lost.filter((id) => lostLocks.get(id)?.redelivered ?? true);
    for (const id of lost) lostLocks.set(id, { at: now, redelivered: false });
    if (fresh.length === 0) return;
    o.metrics.locksLost.inc(fresh.length);
    log.warn(
      { jobs: fresh.length, jobIds: fresh.slice(0, 10) },
      `lost the lock of ${fresh.length} held push job${fresh.length === 1 ? '' : 's'}: it expired before it was renewed ` +
        `(Redis refused or did not answer the renewal, or this process stalled, for longer than WRITER_LOCK_DURATION_MS, ` +
        `${o.lockDurationMs} ms); they go back to the queue and are stored once (the ledger skips their second delivery)`,
    );
  });
  worker.on('error', (err) => {
    // BullMQ still renewed the lock of a job this process had just put back (its lock manager lets
    // go of a job only after the processor returns): nothing is wrong, and during an outage it was
    // one warning with a stack per job. A lock lost (lockRenewalFailed, said once above) fails every
    // later renewal and the job's end as well.
    const renewal = /^could not renew lock for job (\S+)$/.exec(err.message);
    if (renewal && (justPutBack.has(renewal[1]!) || lostLocks.has(renewal[1]!))) return;
    // Its end: the lock gone ("Missing lock"), or the job's redelivery holding it ("Lock mismatch").
    const lockGone = /^(?:Missing lock|Lock mismatch) for job (\S+)\./.exec(err.message);
    if (lockGone && lostLocks.has(lockGone[1]!)) return;
    const missing = /^Missing key for job (\S+)\./.exec(err.message);
    if (!missing) return o.redisOutage.error(err, 'push worker error');
    jobGone(missing[1]!);
  });
  worker.on('completed', (job) => {
    const blobs = blobsOf.get(job);
    if (blobs)
      // If this fails (or the writer dies first), the maintenance sweep deletes them: their job is gone.
      void dropPushBlobs(o.connection, o.pushBlobsKey, blobs).catch((err: unknown) =>
        log.warn(
          { jobId: job.id, err: err instanceof Error ? err.message : String(err) },
          'large-push bodies not deleted; the sweep will',
        ),
      );
  });
  const failures = createFailureLog(log);
  worker.on('failed', (job, err) => {
    o.metrics.jobFailures.inc();
    if (err instanceof UnrecoverableError || err.name === 'UnrecoverableError') {
      o.metrics.deadLetters.inc();
      log.warn({ jobId: job?.id, reason: err.message }, 'push job dead-lettered');
    } else if (job && job.attemptsMade >= (job.opts.attempts ?? 1)) {
      // Its last attempt: it stays in the failed set (a dead letter the admin API lists and retries).
      o.metrics.deadLetters.inc();
      failures.report(
        'error',
        err,
        { jobId: job.id, attemptsMade: job.attemptsMade },
        'push job dead-lettered after its last attempt',
        {
          always: true,
        },
      );
    } else {
      failures.report('warn', err, { jobId: job?.id, attemptsMade: job?.attemptsMade }, 'push job failed');
    }
  });

  // Queue handle for the gauges (lag = now - enqueue time of the oldest push not yet committed:
  // waiting, waiting for a retry, or taken by any writer).
  const queue = new Queue(o.queueName, { connection: o.connection, prefix: o.prefix });
  queue.on('error', (err) => o.redisOutage.error(err, 'push queue error'));
  /**
   * Enqueue time of the oldest waiting job, read without its data (push bodies, up to megabytes): its
   * id from the tail of the wait list (BullMQ adds jobs at the head and workers take from the tail),
   * then the `timestamp` field of its hash. A job taken and finished between the two reads has no
   * hash any more: then the next oldest is read.
   */
  const oldestWaitingSince = async (): Promise<number | undefined> => {
    const client = await queue.client;
    for (let attempt = 0; attempt < 3; attempt++) {
      const [id] = await queue.getRanges(['wait'], 0, 0, true);
      if (id === undefined) return undefined;
      const timestamp = await client.hget(queue.toKey(id), 'timestamp');
      if (timestamp !== null) return Number(timestamp);
    }
    return undefined;
  };
  /** Enqueue time of the oldest of the 50 jobs at each end of a list or sorted set (ids only), or undefined. */
  const oldestAtEnds = async (ids: string[]): Promise<number | undefined> => {
    if (ids.length === 0) return undefined;
    const client = await queue.client;
    const stamps = await Promise.all([...new Set(ids)].map((id) => client.hget(queue.toKey(id), 'timestamp')));
    // A job finished between the two reads has no hash any more.
    const oldest = Math.min(...stamps.filter((t) => t !== null).map(Number));
    return Number.isFinite(oldest) ? oldest : undefined;
  };
  /**
   * Enqueue time of the oldest job waiting for a retry (a failed attempt: BullMQ's delayed set, by
   * due time). Backoff grows with the attempts, so the oldest jobs are usually due last: the 50
   * due first and the 50 due last are read, not the whole set.
   */
  const oldestRetryingSince = async (): Promise<number | undefined> => {
    const client = await queue.client;
    const key = queue.toKey('delayed');
    const [first, last] = await Promise.all([client.zrange(key, 0, 49), client.zrange(key, -50, -1)]);
    return oldestAtEnds([...first, ...last]);
  };
  /**
   * Enqueue time of the oldest job taken by any writer (BullMQ's active list, newest taken at its
   * head): this one's, other live writers', and a dead writer's, which stay there until their lock
   * expires and the stalled check returns them to the queue — about a minute in which, before, no
   * gauge showed those pushes at all.
   */
  const oldestActiveSince = async (): Promise<number | undefined> => {
    const client = await queue.client;
    const key = queue.toKey('active');
    const [first, last] = await Promise.all([client.lrange(key, 0, 49), client.lrange(key, -50, -1)]);
    return oldestAtEnds([...first, ...last]);
  };
  /**
   * How many large-push bodies the index holds, and the oldest one's age in seconds (by Redis's
   * clock, as the edge's index entries).
   */
  const pushBlobStats = async (): Promise<[number, number]> => {
    const client = o.connection;
    const [count, oldest, [seconds, micros]] = await Promise.all([
      client.zcard(o.pushBlobsKey),
      client.zrange(o.pushBlobsKey, 0, 0, 'WITHSCORES'),
      client.time(),
    ]);
    const now = Number(seconds) * 1000 + Number(micros) / 1000;
    return [count, oldest[1] === undefined ? 0 : Math.max(0, (now - Number(oldest[1])) / 1000)];
  };
  /** The oldest enqueue time the last refresh saw: during a Redis outage the lag keeps growing from it. */
  let lastOldest = Infinity;
  const setLag = (oldest: number) =>
    o.metrics.queueLag.set(Number.isFinite(oldest) ? Math.max(0, (Date.now() - oldest) / 1000) : 0);
  const heldOldest = () => {
    let oldest = Infinity;
    for (const since of heldSince.values()) oldest = Math.min(oldest, since);
    return oldest;
  };
  /** Refreshes that timed out and are still waiting for Redis. */
  let unanswered = 0;
  /**
   * Reads the queue's gauges. The connection queues commands while Redis is away (BullMQ needs
   * `maxRetriesPerRequest: null`): a refresh then neither fails nor answers. So one not answered
   * within 1.5 s counts as failed, and no new one is sent while the connection is down or a
   * timed-out one is still waiting (they would pile up); either way the lag goes on growing from
   * the oldest push the last answer showed.
   */
  const refreshGauges = async () => {
    const client = await queue.client;
    if (unanswered > 0 || client.status !== 'ready') {
      setLag(Math.min(lastOldest, heldOldest()));
      return;
    }
    let counts: Record<string, number>, waitingSince, retryingSince, activeSince, blobs: [number, number];
    let timer: NodeJS.Timeout | undefined;
    const reads = Promise.all([
      queue.getJobCounts('wait', 'delayed', 'failed', 'active'),
      oldestWaitingSince(),
      oldestRetryingSince(),
      oldestActiveSince(),
      pushBlobStats(),
    ]);
    try {
      [counts, waitingSince, retryingSince, activeSince, blobs] = await Promise.race([
        reads,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            unanswered++;
            void reads.catch(() => undefined).finally(() => unanswered--);
            reject(new Error('queue gauges: no answer from Redis within 1.5 s'));
          }, 1500);
        }),
      ]);
    } catch (err) {
      reads.catch(() => undefined);
      setLag(Math.min(lastOldest, heldOldest()));
      throw err;
    } finally {
      clearTimeout(timer);
    }
    o.metrics.queueWaiting.set(counts.wait ?? 0);
    o.metrics.queueRetrying.set(counts.delayed ?? 0);
    o.metrics.queueActive.set(counts.active ?? 0);
    o.metrics.queueFailed.set(counts.failed ?? 0);
    o.metrics.pushBlobs.set(blobs[0]);
    o.metrics.pushBlobOldestAge.set(blobs[1]);
    lastOldest = Math.min(waitingSince ?? Infinity, retryingSince ?? Infinity, activeSince ?? Infinity);
    setLag(Math.min(lastOldest, heldOldest()));
  };
  let gaugeTimer: NodeJS.Timeout | null = null;

  return {
    worker,
    queue,
    refreshGauges,
    start() {
      void worker.run().catch((err: unknown) => log.error({ err }, 'push worker stopped'));
      gaugeTimer = setInterval(() => void refreshGauges().catch(() => undefined), 2000);
    },
    async close() {
      if (gaugeTimer) clearInterval(gaugeTimer);
      await worker.close();
      await queue.close();
      failures.close();
    },
    held: () => heldSince.size,
  };
}
