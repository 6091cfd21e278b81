import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { PG_ERROR_KINDS } from '@pga/db';

/** Everything /metrics exposes (issue 5 §6). One registry per writer instance (tests run several). */
export function createWriterMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'writer_' });
  const r = [registry];
  const postgresErrors = new Counter({
    name: 'writer_postgres_errors_total',
    help: `PostgreSQL errors met storing batches (the push path: each failed attempt, retried or not), by kind (pgErrorKind): ${PG_ERROR_KINDS.join(', ')}`,
    labelNames: ['reason'] as const,
    registers: r,
  });
  // Every kind at 0 from the start: increase() sees the first one.
  for (const reason of PG_ERROR_KINDS) postgresErrors.inc({ reason }, 0);
  return {
    registry,
    postgresErrors,
    rows: new Counter({ name: 'writer_rows_written_total', help: 'Metric rows committed to collector_metrics', registers: r }),
    bytes: new Counter({
      name: 'writer_bytes_written_total',
      help: 'Metric JSON committed, in bytes',
      registers: r,
    }),
    pushesStored: new Counter({ name: 'writer_pushes_stored_total', help: 'Pushes committed', registers: r }),
    pushesUnknownCollector: new Counter({
      name: 'writer_pushes_unknown_collector_total',
      help: 'Pushes committed whose collector has no row in this database (a wrong DATABASE_URL, or a database restored from before their registration): stored, but shown nowhere. Alert on any increase.',
      registers: r,
    }),
    pushesDuplicate: new Counter({
      name: 'writer_pushes_duplicate_total',
      help: 'Redelivered pushes skipped because the ingest ledger already had them',
      registers: r,
    }),
    pushesExpired: new Counter({
      name: 'writer_pushes_expired_total',
      help: 'Pushes not stored because they were accepted longer ago than METRICS_RETENTION_DAYS (a dead letter retried late)',
      registers: r,
    }),
    pushesFuture: new Counter({
      name: 'writer_pushes_received_in_future_total',
      help: 'Pushes stored whose received_at (the edge clock) was past the last daily partition made ahead (the end of the UTC day PARTITION_DAYS_AHEAD days after the writer clock today): their rows are in the DEFAULT partition',
      registers: r,
    }),
    batches: new Counter({ name: 'writer_batches_total', help: 'Committed batches (transactions)', registers: r }),
    batchRows: new Histogram({
      name: 'writer_batch_rows',
      help: 'Metric rows per committed batch that stored any (not observed for one of duplicates or expired pushes only)',
      buckets: [1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000],
      registers: r,
    }),
    batchJobs: new Histogram({
      name: 'writer_batch_jobs',
      help: 'BullMQ jobs per committed batch',
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048],
      registers: r,
    }),
    copySeconds: new Histogram({
      name: 'writer_copy_duration_seconds',
      help: 'Duration of the COPY statement of a batch (batches with no rows to store run none)',
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: r,
    }),
    batchSeconds: new Histogram({
      name: 'writer_batch_duration_seconds',
      help: 'Duration of a whole batch transaction, BEGIN to COMMIT (not the wait for a pool connection)',
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: r,
    }),
    retries: new Counter({
      name: 'writer_retries_total',
      help: 'Batch retries after a transient PostgreSQL error',
      registers: r,
    }),
    outageDelays: new Counter({
      name: 'writer_jobs_put_back_total',
      help: 'Jobs put back to wait, without using up an attempt, because PostgreSQL was out of reach past the retries or refused the writer (isEveryones in batcher.ts)',
      registers: r,
    }),
    deadLetters: new Counter({
      name: 'writer_dead_letters_total',
      help: 'Jobs this process moved to the failed set for good (poison, or their last attempt failed)',
      registers: r,
    }),
    locksLost: new Counter({
      name: 'writer_job_locks_lost_total',
      help: 'Held push jobs whose BullMQ lock this process lost, once per delivery (Redis refused or did not answer the renewals for longer than WRITER_LOCK_DURATION_MS, e.g. MISCONF on a full disk, or this process stalled as long): each goes back to the queue and is stored once, its second delivery skipped by the ledger',
      registers: r,
    }),
    jobFailures: new Counter({ name: 'writer_job_failures_total', help: 'Jobs failed for any reason', registers: r }),
    heartbeatsFlushed: new Counter({
      name: 'writer_heartbeats_flushed_total',
      help: 'Heartbeats applied in PostgreSQL (a hash flushed again, already applied, is not counted)',
      registers: r,
    }),
    commandDeliveries: new Counter({
      name: 'writer_command_deliveries_flushed_total',
      help: 'Command deliveries recorded in PostgreSQL',
      registers: r,
    }),
    statusPublished: new Counter({
      name: 'writer_status_published_total',
      help: 'Collector status messages published',
      registers: r,
    }),
    maintenanceRuns: new Counter({
      name: 'writer_maintenance_runs_total',
      help: 'Maintenance jobs run by this process, by task (partitions, sweep, rollup) and outcome (ok, failed)',
      labelNames: ['task', 'outcome'] as const,
      registers: r,
    }),
    queueLag: new Gauge({
      name: 'writer_queue_lag_seconds',
      help: 'now - enqueue time of the oldest push job not yet committed (waiting in the queue, waiting for a retry, or taken by any writer, one that died included); the same on every writer of a Redis: aggregate with max(), not sum()',
      registers: r,
    }),
    queueWaiting: new Gauge({
      name: 'writer_queue_waiting_jobs',
      help: 'Push jobs waiting in the queue; the same on every writer of a Redis: aggregate with max(), not sum()',
      registers: r,
    }),
    queueActive: new Gauge({
      name: 'writer_queue_active_jobs',
      help: "Push jobs taken by a writer and not finished, all writers together (a dead writer's stay until their lock expires and the stalled check returns them); the same on every writer of a Redis: aggregate with max(), not sum()",
      registers: r,
    }),
    queueRetrying: new Gauge({
      name: 'writer_queue_retrying_jobs',
      help: "Push jobs waiting for their next try (BullMQ delayed set): failed an attempt, or put back after a failure that is everyone's; the same on every writer of a Redis: aggregate with max(), not sum()",
      registers: r,
    }),
    queueFailed: new Gauge({
      name: 'writer_queue_dead_letter_jobs',
      help: 'Push jobs in the failed set (dead letters); the same on every writer of a Redis: aggregate with max(), not sum()',
      registers: r,
    }),
    pushBlobs: new Gauge({
      name: 'writer_push_blobs',
      help: 'Large-push bodies in Redis apart from their jobs (queued, in flight, dead letters, orphans awaiting the sweep); the same on every writer of a Redis: aggregate with max(), not sum()',
      registers: r,
    }),
    pushBlobOldestAge: new Gauge({
      name: 'writer_push_blob_oldest_age_seconds',
      help: 'Age of the oldest large-push body in Redis (0 when none): growing past the dead-letter age or the queue lag means a leak; the same on every writer of a Redis: aggregate with max(), not sum()',
      registers: r,
    }),
    inFlightJobs: new Gauge({ name: 'writer_in_flight_jobs', help: 'Push jobs held by this process', registers: r }),
    heldBytes: new Gauge({
      name: 'writer_held_push_bytes',
      help: 'Push body bytes held by this process until their batch commits',
      registers: r,
    }),
    jobConcurrency: new Gauge({
      name: 'writer_job_concurrency',
      help: 'Push jobs this process may hold now (follows the job size, at most WRITER_CONCURRENCY)',
      registers: r,
    }),
  };
}

export type WriterMetrics = ReturnType<typeof createWriterMetrics>;
