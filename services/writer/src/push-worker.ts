import { Queue, UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from '@pga/logger';
import type { Batcher, JobOutcome } from './batcher';
import type { WriterMetrics } from './metrics';
import { PoisonPushError, preparePushJob } from './prepare-push';

export interface PushWorkerOptions {
  connection: Redis;
  queueName: string;
  prefix: string;
  concurrency: number;
  lockDurationMs: number;
  stalledIntervalMs: number;
  batcher: Batcher;
  metrics: WriterMetrics;
  logger: Logger;
}

/**
 * The BullMQ consumer of the edge's PushJobs. Each job is held (its lock renewed by BullMQ) until the
 * batch containing it has committed; only then does the processor return and BullMQ mark it
 * completed. Poison (invalid job, body not matching its checksum, data PostgreSQL rejects) fails once
 * with UnrecoverableError into the queue's failed set, which the admin service lists and retries.
 */
export function createPushWorker(o: PushWorkerOptions) {
  const log = o.logger.child({ module: 'push-worker' });
  let held = 0;

  const processJob = async (job: Job): Promise<JobOutcome> => {
    held++;
    o.metrics.inFlightJobs.set(held);
    try {
      const pushes = preparePushJob(job.data);
      return await o.batcher.submit(pushes);
    } catch (err) {
      if (err instanceof PoisonPushError) throw new UnrecoverableError(err.message);
      throw err;
    } finally {
      held--;
      o.metrics.inFlightJobs.set(held);
    }
  };

  const worker = new Worker(o.queueName, processJob, {
    connection: o.connection,
    prefix: o.prefix,
    concurrency: o.concurrency,
    autorun: false,
    lockDuration: o.lockDurationMs,
    stalledInterval: o.stalledIntervalMs,
    // A job whose writer died is redelivered (the ledger makes that harmless); only a job that kills
    // writers again and again ends in the failed set.
    maxStalledCount: 10,
    // Completed jobs carry whole push bodies: keep only a few (unless the job options say otherwise).
    removeOnComplete: { age: 600, count: 200 },
    // Dead letters stay for the admin service to list and retry (a week; then retention has moved on).
    removeOnFail: { age: 7 * 86_400 },
  });
  worker.on('error', (err) => log.warn({ err }, 'push worker error'));
  worker.on('failed', (job, err) => {
    o.metrics.jobFailures.inc();
    if (err instanceof UnrecoverableError || err.name === 'UnrecoverableError') {
      o.metrics.deadLetters.inc();
      log.warn({ jobId: job?.id, reason: err.message }, 'push job dead-lettered');
    } else {
      log.warn({ jobId: job?.id, attemptsMade: job?.attemptsMade, err }, 'push job failed');
    }
  });

  // Queue handle for the gauges (lag = now - enqueue time of the oldest waiting job).
  const queue = new Queue(o.queueName, { connection: o.connection, prefix: o.prefix });
  queue.on('error', (err) => log.warn({ err }, 'push queue error'));
  const refreshGauges = async () => {
    const [counts, oldest] = await Promise.all([queue.getJobCounts('wait', 'failed'), queue.getJobs(['wait'], 0, 0, true)]);
    o.metrics.queueWaiting.set(counts.wait ?? 0);
    o.metrics.queueFailed.set(counts.failed ?? 0);
    const first = oldest[0];
    o.metrics.queueLag.set(first ? Math.max(0, (Date.now() - first.timestamp) / 1000) : 0);
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
    },
    held: () => held,
  };
}
