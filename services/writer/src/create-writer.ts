import type { Server } from 'node:http';
import { Redis } from 'ioredis';
import { Gauge } from 'prom-client';
import { metricsAuth } from '@pga/config';
import { createPool, dateStyleRefusal, describeDatabase, migrateDatabase, pgErrorKind, type Pool } from '@pga/db';
import { ClockSkewWatch, createOutageLog, isConnectionError, type Logger } from '@pga/logger';
import { checkRedisVersion, redisKeys } from '@pga/redis-keys';
import { createBatcher } from './batcher';
import type { WriterConfig } from './config';
import { createFuturePushWatch } from './future-pushes';
import { createHeartbeatFlusher } from './heartbeat-flush';
import { createMaintenance } from './maintenance';
import { createWriterMetrics } from './metrics';
import { createOpsServer } from './ops-server';
import { createPgProbe } from './pg-probe';
import { createPushWorker } from './push-worker';
import { createReadiness, registerReadinessMetrics } from './readiness';
import { createUnreadRetrier } from './retry-unread';
import { checkRedisSettings } from './redis-check';
import { createStatusPublisher, CURRENT_STATUSES, type StatusRow } from './status-publisher';
import { BatchDeadlineError, storeBatch } from './store-batch';
import { createUnknownCollectorWatch } from './unknown-collectors';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Longest each of readiness's round trips (PostgreSQL, Redis) may take before it counts as unreachable. */
const READINESS_TIMEOUT_MS = 2000;

/** Builds the whole writer (STYLE.md: main.ts passes config + logger into one factory). */
export function createWriter({ config, logger }: { config: WriterConfig; logger: Logger }) {
  const keys = redisKeys(config.REDIS_KEY_PREFIX);
  const metrics = createWriterMetrics();
  // BullMQ requires maxRetriesPerRequest: null on worker connections (it retries blocking calls itself).
  const redis = new Redis(config.REDIS_URL, { maxRetriesPerRequest: null });
  // One line when Redis goes away, a summary a minute while it stays away, one when it is back —
  // for this connection and the ones BullMQ's queues and workers open from it.
  // Redis up but refusing writes (out of memory, read-only) reconnects nothing: a SET every 2 s
  // while it lasts tells when it takes writes again.
  const redisOutage = createOutageLog(logger, 'Redis', { probe: () => redis.set(keys.writeProbe, '1', 'EX', 10) });
  redis.on('error', (err) => redisOutage.error(err, 'redis connection error'));
  redis.on('ready', () => redisOutage.connected());
  // The same for PostgreSQL, as the heartbeat flush (every second) and the scheduled jobs see it.
  const pgOutage = createOutageLog(logger, 'PostgreSQL');
  const pool: Pool = createPool(config.DATABASE_URL, {
    max: config.WRITER_PG_POOL_SIZE,
    applicationName: 'pga-writer',
    logger,
    onIdleError: (err) => pgOutage.error(err, 'idle PostgreSQL client error'),
  });
  const statusPublisher = createStatusPublisher(redis, keys.statusChannel, logger, {
    onSent: (messages) => metrics.statusPublished.inc(messages),
    current: async (ids) => (await pool.query<StatusRow>(CURRENT_STATUSES, [ids])).rows,
  });
  const publish = statusPublisher.publish;

  const batchLog = logger.child({ module: 'batcher' });
  const watchFuture = createFuturePushWatch({ daysAhead: config.PARTITION_DAYS_AHEAD, logger: batchLog, metrics });
  const noteUnknown = createUnknownCollectorWatch({ databaseUrl: config.DATABASE_URL, logger: batchLog, metrics });
  const batcher = createBatcher({
    maxRows: config.WRITER_BATCH_MAX_ROWS,
    maxBytes: config.WRITER_BATCH_MAX_BYTES,
    windowMs: config.WRITER_BATCH_WINDOW_MS,
    parallelism: config.WRITER_FLUSH_PARALLELISM,
    retryMaxMs: config.WRITER_RETRY_MAX_MS,
    logger: batchLog,
    store: async (pushes) => {
      // Why the push path fails, for PgaWriterRetrying (writer_postgres_errors_total{reason}).
      const result = await storeBatch(pool, pushes, {
        retentionDays: config.METRICS_RETENTION_DAYS,
        deadlineMs: config.WRITER_BATCH_DEADLINE_MS,
        ...(config.WRITER_TEST_PAUSE_MID_COPY_MS > 0
          ? {
              onMidCopy: async () => {
                batchLog.info({ pushes: pushes.map((p) => p.pushId) }, 'test hook: pausing mid-COPY');
                await sleep(config.WRITER_TEST_PAUSE_MID_COPY_MS);
              },
            }
          : {}),
      }).catch((err: unknown) => {
        const reason = err instanceof BatchDeadlineError ? 'timeout' : pgErrorKind(err);
        if (reason) metrics.postgresErrors.inc({ reason });
        throw err;
      });
      // BEGIN to COMMIT: the phases are timed from checkout on, so waiting for a pool connection
      // (every connection busy) is not counted as a slow transaction.
      const p = result.phases;
      metrics.batchSeconds.observe((p.ledger + p.copy + p.rollup + p.state + p.commit) / 1000);
      watchFuture(pushes, result.storedIds);
      return result;
    },
    afterCommit: async (result, jobs) => {
      pgOutage.recovered();
      metrics.rows.inc(result.rows);
      metrics.bytes.inc(result.bytes);
      metrics.pushesStored.inc(result.stored);
      noteUnknown(result.unknown);
      metrics.pushesDuplicate.inc(result.duplicates);
      if (result.expired > 0) {
        metrics.pushesExpired.inc(result.expired);
        // Rare (a dead letter retried after the retention), so one line per batch, not a summary.
        batchLog.warn(
          { expired: result.expired, retentionDays: config.METRICS_RETENTION_DAYS },
          'pushes accepted longer ago than the retention were not stored (their rows would be past it already)',
        );
      }
      metrics.batches.inc();
      if (jobs > 0) metrics.batchJobs.observe(jobs);
      // Only a batch that ran a COPY: one of duplicates or expired pushes only would add zeros.
      if (result.rows > 0) {
        metrics.batchRows.observe(result.rows);
        metrics.copySeconds.observe(result.copyMs / 1000);
      }
      if (config.WRITER_TEST_PAUSE_AFTER_COMMIT_MS > 0) {
        batchLog.info({ pushes: result.storedIds }, 'test hook: committed, pausing before acknowledging');
        await sleep(config.WRITER_TEST_PAUSE_AFTER_COMMIT_MS);
      }
      await publish(result.statuses);
    },
    onRetry: (err, attempt, delayMs) => {
      metrics.retries.inc();
      // PostgreSQL away: each batch in flight retries every few seconds for up to
      // WRITER_RETRY_MAX_MS. Its first retry is said; the later ones are counted in the outage's
      // summaries, not a line each.
      // (A batch past its deadline is not an outage, though its error carries a socket-style code.)
      if (attempt > 1 && isConnectionError(err) && !(err instanceof BatchDeadlineError))
        return pgOutage.error(err, 'transient PostgreSQL error; retrying batch');
      batchLog.warn(
        { err: err instanceof Error ? err.message : String(err), attempt, delayMs },
        'transient PostgreSQL error; retrying batch',
      );
    },
  });

  const pushWorker = createPushWorker({
    connection: redis,
    queueName: keys.pushQueue,
    prefix: keys.bullPrefix,
    maxJobs: config.WRITER_CONCURRENCY,
    // What the batches committing at once can take, plus two batches filling meanwhile.
    heldBudget: {
      rows: (config.WRITER_FLUSH_PARALLELISM + 2) * config.WRITER_BATCH_MAX_ROWS,
      bytes: (config.WRITER_FLUSH_PARALLELISM + 2) * config.WRITER_BATCH_MAX_BYTES,
    },
    lockDurationMs: config.WRITER_LOCK_DURATION_MS,
    stalledIntervalMs: config.WRITER_STALLED_INTERVAL_MS,
    batcher,
    metrics,
    logger,
    redisOutage,
    deadLetterAgeSeconds: config.METRICS_RETENTION_DAYS * 86_400,
    putBackMaxMs: config.WRITER_PUT_BACK_MAX_HOURS * 3_600_000,
    pushBlobsKey: keys.pushBlobs,
  });
  const heartbeats = createHeartbeatFlusher({ pool, redis, keys, logger, metrics, publish, pgOutage, redisOutage });
  const maintenance = createMaintenance({
    pool,
    connection: redis,
    redisOutage,
    pgOutage,
    queueName: keys.maintenanceQueue,
    prefix: keys.bullPrefix,
    deniedJtisKey: keys.deniedJtis,
    dataEpochKey: keys.dataEpoch,
    blobSweep: {
      index: keys.pushBlobs,
      blobPrefix: keys.pushBlob(''),
      jobKey: (jobId) => pushWorker.queue.toKey(jobId),
      graceMs: config.WRITER_PUSH_BLOB_GRACE_S * 1000,
    },
    retryUnread: createUnreadRetrier(pushWorker.queue, redis, logger),
    flushHeartbeats: heartbeats.flushHeartbeatsAfterRunning,
    unflushedHeartbeats: heartbeats.unflushedHeartbeats,
    logger,
    metrics,
    publish,
    retentionDays: config.METRICS_RETENTION_DAYS,
    daysAhead: config.PARTITION_DAYS_AHEAD,
    uptimeWindowHours: config.WRITER_UPTIME_WINDOW_HOURS,
    partitionsEveryMs: config.WRITER_MAINTENANCE_INTERVAL_MS,
    sweepEveryMs: config.WRITER_SWEEP_INTERVAL_MS,
    rollupEveryMs: config.WRITER_ROLLUP_FOLD_MS,
  });

  let draining = false;
  let started = false;
  // /readyz and the writer_ready gauge: one check, run per probe and per scrape, never per push.
  // PostgreSQL is pinged on a connection of its own, not through the pool: a pool whose every
  // connection is held (statements behind a lock) is busy, not away (pg-probe.ts).
  // Its answers also read PostgreSQL's clock: heartbeat and push times are the edges' clocks, which
  // the sweep compares with PostgreSQL's, and this host's own drift shows here (PgaClockSkew).
  const clock = new ClockSkewWatch(logger, 'PostgreSQL');
  const pgProbe = createPgProbe(config.DATABASE_URL, {
    timeoutMs: READINESS_TIMEOUT_MS,
    onClock: (sentAt, serverMs, answeredAt) => clock.observe(sentAt, serverMs, answeredAt),
  });
  new Gauge({
    name: 'writer_clock_offset_seconds',
    help: "PostgreSQL's clock minus this writer's (seconds; positive: the writer is behind), read by the readiness check (each scrape and /readyz probe); no sample without a reading in the last minute",
    registers: [metrics.registry],
    collect() {
      // No reading in the last minute: no sample, not a 0 that reads as "in sync".
      const offset = clock.offsetSeconds;
      if (offset === undefined) this.reset();
      else this.set(offset);
    },
  });
  const readiness = createReadiness({
    isDraining: () => draining,
    isStarted: () => started,
    timeoutMs: READINESS_TIMEOUT_MS,
    pingPostgres: () => pgProbe.ping(),
    pingRedis: () => redis.ping(),
  });
  registerReadinessMetrics(metrics.registry, readiness);
  const server: Server = createOpsServer({
    registry: metrics.registry,
    ready: readiness,
    ...(config.METRICS_TOKEN.length > 0 ? { metricsAuth: metricsAuth(config.METRICS_TOKEN) } : {}),
  });

  return {
    config,
    keys,
    pool,
    redis,
    metrics,
    batcher,
    maintenance,
    heartbeats,
    pushWorker,
    server,
    /** Listens on the ops port first (so /healthz answers during start), then checks and starts work. */
    async start(): Promise<void> {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(config.WRITER_PORT, config.WRITER_HOST, () => resolve());
      });
      await redis.ping();
      await checkRedisVersion(redis);
      await checkRedisSettings(redis, logger, { require: config.WRITER_REQUIRE_NOEVICTION });
      // migrateDatabase refuses a connection whose DateStyle is not ISO (a pooler dropped ours: every
      // time read back would be null); without it, the same check here, a PostgreSQL outage aside.
      if (config.WRITER_MIGRATE) await migrateDatabase(config.DATABASE_URL, logger);
      else {
        const refusal = await dateStyleRefusal(pool).catch((err: unknown) => {
          logger.warn(
            { err },
            "PostgreSQL's DateStyle was not checked at start: the query failed (checked again at the next start)",
          );
          return undefined;
        });
        if (refusal) throw new Error(`${describeDatabase(config.DATABASE_URL)}: ${refusal}`);
      }
      pushWorker.start();
      heartbeats.start(config.WRITER_HEARTBEAT_FLUSH_MS);
      await maintenance.start();
      started = true;
      logger.info({ port: config.WRITER_PORT, queue: keys.pushQueue, maxJobs: config.WRITER_CONCURRENCY }, 'writer started');
    },
    /**
     * SIGTERM: not ready, stop taking jobs, commit the batch in flight, final heartbeat flush, close.
     * Bounded by WRITER_DRAIN_TIMEOUT_MS, and not waited for at all while Redis is unreachable (the
     * jobs could not be acknowledged anyway): what is left is safe to abandon, because a job is
     * acknowledged only after its batch committed, an unacknowledged job is redelivered once its
     * lock expires, and the ledger skips the pushes a redelivered job already stored. Resolves
     * whether the drain finished.
     */
    async stop(): Promise<{ drained: boolean }> {
      draining = true;
      logger.info({ heldJobs: pushWorker.held() }, 'writer draining');
      const graceful = (async () => {
        await Promise.all([pushWorker.close(), batcher.drain()]);
        await batcher.drain();
        await heartbeats.stop();
        await maintenance.close();
        await statusPublisher.flush();
        return 'drained' as const;
      })();
      graceful.catch((err: unknown) => logger.warn({ err }, 'drain failed'));
      let timer: NodeJS.Timeout | undefined;
      let onClose: (() => void) | undefined;
      const redisGone = new Promise<'redis unreachable'>((resolve) => {
        if (redis.status !== 'ready') return resolve('redis unreachable');
        onClose = () => resolve('redis unreachable');
        redis.once('close', onClose);
      });
      const outcome = await Promise.race([
        graceful,
        redisGone,
        new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), config.WRITER_DRAIN_TIMEOUT_MS))),
      ]).catch(() => 'failed' as const);
      clearTimeout(timer);
      redisOutage.close();
      pgOutage.close();
      await pgProbe.close();
      if (onClose) redis.off('close', onClose);
      await new Promise<void>((resolve) => server.close(() => resolve()));
      if (outcome !== 'drained') {
        const heldJobs = pushWorker.held();
        const batchesInFlight = batcher.inFlight();
        // Error only when work was abandoned: with no job held and no batch in flight, only the final
        // heartbeat flush was skipped, and those heartbeats stay in Redis for the next writer.
        const abandoned = heldJobs > 0 || batchesInFlight > 0;
        logger[abandoned ? 'error' : 'warn'](
          { reason: outcome, drainTimeoutMs: config.WRITER_DRAIN_TIMEOUT_MS, heldJobs, batchesInFlight },
          `writer stopped without finishing its drain (${outcome === 'timeout' ? `not done within ${config.WRITER_DRAIN_TIMEOUT_MS} ms` : outcome}): ` +
            (abandoned
              ? 'the jobs it held go back to the queue when their lock expires, and no push is stored twice'
              : 'it held no jobs; heartbeats not yet flushed stay in Redis for the next writer'),
        );
        redis.disconnect();
        // Not awaited: a client stuck in a COPY would hold pool.end() up; exiting rolls it back.
        void pool.end().catch(() => undefined);
        return { drained: false };
      }
      await redis.quit().catch(() => undefined);
      await pool.end();
      logger.info('writer stopped');
      return { drained: true };
    },
  };
}

export type Writer = ReturnType<typeof createWriter>;
