import { z } from 'zod';
import { loadConfig, commonSchema, metricsTokenSchema, openMetricsWarningFor, port, listenHost, int, bool } from '@pga/config';

// METRICS_TOKEN: when set, /metrics answers only `Authorization: Bearer <one of its tokens>`.
export const WriterConfigSchema = commonSchema.extend(metricsTokenSchema.shape).extend({
  /** Port of /healthz, /readyz and /metrics; default 9091. */
  WRITER_PORT: port(9091),
  /** Address for the operations port; default 127.0.0.1. */
  WRITER_HOST: listenHost('127.0.0.1'),
  /** Prefix of every shared Redis key (@pga/redis-keys); default pga. */
  REDIS_KEY_PREFIX: z.string().min(1).default('pga'),
  /** Days of collector_metrics (and rollups, heartbeat history) kept; default 14. */
  METRICS_RETENTION_DAYS: int(14, 1, 3650),
  /** Daily partitions created ahead of today; default 7. */
  PARTITION_DAYS_AHEAD: int(7, 1, 60),
  /** Apply pending migrations at start (advisory-locked, safe with several processes); default true. */
  WRITER_MIGRATE: bool(true),

  /** A batch is flushed at this many metric rows; default 10000. */
  WRITER_BATCH_MAX_ROWS: int(10_000, 1, 1_000_000),
  /** … or at this many bytes of metric text; default 16 MiB. */
  WRITER_BATCH_MAX_BYTES: int(16 * 1024 * 1024, 1024, 1024 * 1024 * 1024),
  /** … or this many ms after its first job arrived, once a transaction slot is free; default 50 ms. */
  WRITER_BATCH_WINDOW_MS: int(50, 0, 10_000),
  /**
   * Most push jobs held at once by this process (BullMQ worker concurrency); default 2048. The
   * writer holds fewer when jobs are large: as many as fill (WRITER_FLUSH_PARALLELISM + 2) batches
   * of WRITER_BATCH_MAX_ROWS / WRITER_BATCH_MAX_BYTES (push-worker.ts).
   */
  WRITER_CONCURRENCY: int(2048, 1, 100_000),
  /** Batches committing at the same time in this process; default 2. */
  WRITER_FLUSH_PARALLELISM: int(2, 1, 32),
  /** PostgreSQL pool size (COPY batches + heartbeat flush + maintenance); default 5. */
  WRITER_PG_POOL_SIZE: int(5, 2, 100),
  /** BullMQ job lock duration in ms (a killed worker's jobs are redelivered after it); default 30000. */
  WRITER_LOCK_DURATION_MS: int(30_000, 500, 600_000),
  /** BullMQ stalled-job check interval in ms; default 30000. */
  WRITER_STALLED_INTERVAL_MS: int(30_000, 200, 600_000),
  /**
   * Longest a batch's transaction may take, BEGIN to COMMIT, in ms; default 120000. Then its
   * connection is closed and the batch retried (a transient error): a connection gone half-open
   * (failover, partition without a RST) would otherwise hold the batch and its jobs forever.
   */
  WRITER_BATCH_DEADLINE_MS: int(120_000, 1000, 3_600_000),
  /** Transient PostgreSQL errors are retried in-process with backoff for at most this long (ms); default 600000. */
  WRITER_RETRY_MAX_MS: int(600_000, 0, 86_400_000),

  /**
   * A job whose batch failed for everyone's reason (PostgreSQL out of reach or refusing the writer)
   * is put back to wait without using up an attempt until it is this many hours old, then uses up its
   * attempts as before; default 24, 0 = never put back.
   */
  WRITER_PUT_BACK_MAX_HOURS: int(24, 0, 24 * 30),

  /**
   * Longest SIGTERM drain (the batch in flight, the final heartbeat flush), in ms; default 10000.
   * After it, or at once when Redis is unreachable, the writer exits anyway: the jobs it holds go
   * back to the queue when their lock expires, and the ingest ledger stores each push once.
   */
  WRITER_DRAIN_TIMEOUT_MS: int(10_000, 0, 600_000),

  /** Heartbeat/command-delivery flush period in ms; default 1000. */
  WRITER_HEARTBEAT_FLUSH_MS: int(1000, 50, 60_000),
  /** Inactivity sweep and uptime refresh period in ms (a repeatable job); default 15000. */
  WRITER_SWEEP_INTERVAL_MS: int(15_000, 200, 3_600_000),
  /** Period of the job folding rollup deltas into collector_metrics_rollup, in ms; default 5000. */
  WRITER_ROLLUP_FOLD_MS: int(5000, 100, 3_600_000),
  /**
   * A large-push body in Redis whose job is gone is deleted by the sweep once it is this many
   * seconds old (push-blobs.ts: its job may still be on its way before that); default 900, at least
   * 300: an edge may take ENQUEUE_TIMEOUT_MS (up to 60 s) plus a second per 16 MiB writing a body's
   * pieces, then up to ENQUEUE_TIMEOUT_MS more adding its job, and still answer 200.
   */
  WRITER_PUSH_BLOB_GRACE_S: int(900, 300, 86_400),
  /** Partition/retention job period in ms (a repeatable job); default 1 hour. */
  WRITER_MAINTENANCE_INTERVAL_MS: int(3_600_000, 1000, 86_400_000),
  /** Rolling window of uptime_percentage in hours; default 24. */
  WRITER_UPTIME_WINDOW_HOURS: int(24, 1, 24 * 90),
  /** Refuse to start unless Redis has maxmemory-policy noeviction; default true. */
  WRITER_REQUIRE_NOEVICTION: bool(true),

  /** Test hook: sleep this long between COMMIT and acknowledging the jobs; default 0 (off). */
  WRITER_TEST_PAUSE_AFTER_COMMIT_MS: int(0, 0, 600_000),
  /** Test hook: sleep this long in the middle of a COPY; default 0 (off). */
  WRITER_TEST_PAUSE_MID_COPY_MS: int(0, 0, 600_000),
});
export type WriterConfig = z.infer<typeof WriterConfigSchema>;

export const readWriterConfig = (env: Record<string, string | undefined> = process.env): WriterConfig =>
  loadConfig(WriterConfigSchema, env);

/**
 * The start-up warning of a writer whose `/metrics` anyone reaching its operations port may read: no
 * METRICS_TOKEN, and WRITER_HOST not a loopback address (as the edge's, `openMetricsWarning`).
 * Undefined when there is nothing to say.
 */
export function openMetricsWarning(config: Pick<WriterConfig, 'METRICS_TOKEN' | 'WRITER_HOST'>): string | undefined {
  return openMetricsWarningFor(
    config.METRICS_TOKEN,
    config.WRITER_HOST,
    `the writer's operations port (WRITER_HOST ${config.WRITER_HOST})`,
  );
}
