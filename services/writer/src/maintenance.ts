import { Queue, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { maintainPartitions, type Pool } from '@pga/db';
import type { Logger, OutageLog } from '@pga/logger';
import { dataEpoch, dataEpochMessage } from '@pga/redis-keys';
import type { WriterMetrics } from './metrics';
import { isRedisError } from './heartbeat-flush';
import { createPgTaskLog } from './pg-task-log';
import { pauseAfterFailedFetch } from './prompt-worker';
import { pruneDeniedJtis } from './prune-deny-set';
import { sweepPushBlobs, type BlobSweep } from './push-blobs';
import {
  FOLD_ROLLUP,
  PRUNE_COMMAND_DELIVERIES,
  PRUNE_COMMANDS,
  PRUNE_LEDGER,
  PRUNE_ROLLUP,
  PRUNE_TOKENS,
  pruneActivity,
  REFRESH_UPTIME,
  SWEEP_INACTIVE,
  UTC_TODAY,
} from './sql';
import type { PublishStatuses, StatusRow } from './status-publisher';

export interface MaintenanceOptions {
  pool: Pool;
  connection: Redis;
  /** Where connection errors of the queue's and the worker's Redis connections go. */
  redisOutage: OutageLog;
  /** Where PostgreSQL connection errors of the scheduled jobs go. */
  pgOutage: OutageLog;
  queueName: string;
  prefix: string;
  /** Redis's set of revoked jtis (redis-keys `deniedJtis`), pruned of long-expired tokens. */
  deniedJtisKey: string;
  /** `keys.dataEpoch`: Redis emptied under the writer is logged (`dataEpoch`). */
  dataEpochKey: string;
  /** Large-push bodies whose job is gone are deleted by the inactivity sweep's job. */
  blobSweep: BlobSweep;
  /**
   * Applies the heartbeats waiting in Redis (the heartbeat flusher's flushHeartbeats), run by the sweep
   * before it judges silence: otherwise a sweep running before the flush (a writer's first sweep
   * within a second of its start after downtime, a PostgreSQL back from an outage) took every collector whose heartbeats had
   * waited in Redis for silent — inactive, published, and back at the next flush.
   */
  flushHeartbeats: () => Promise<number>;
  /**
   * Collectors whose heartbeats are claimed by a flush in progress (any writer's) or still dirty, with
   * their latest heartbeat's time (the flusher's unflushedHeartbeats): not in PostgreSQL yet, so the
   * sweep counts that time as a sign of life.
   */
  unflushedHeartbeats: () => Promise<{ ids: string[]; seen: (string | null)[] }>;
  /** Dead letters an older writer could not read, put back once this writer reads them (retry-unread.ts). */
  retryUnread: () => Promise<number>;
  logger: Logger;
  metrics: WriterMetrics;
  publish: PublishStatuses;
  retentionDays: number;
  daysAhead: number;
  uptimeWindowHours: number;
  partitionsEveryMs: number;
  sweepEveryMs: number;
  rollupEveryMs: number;
}

/**
 * Scheduled work as BullMQ job schedulers on the maintenance queue. Every writer upserts the same
 * scheduler ids (idempotent), BullMQ hands each produced job to exactly one worker, and this worker
 * runs one job at a time: single-flight across all writers. The partition steps (migrations/0037) also
 * take an advisory lock, so a manual call from psql cannot race them either.
 */
/** What the partitions job keeps (METRICS_RETENTION_DAYS, PARTITION_DAYS_AHEAD). */
interface PartitionSettings {
  retentionDays: number;
  daysAhead: number;
}

export function createMaintenance(o: MaintenanceOptions) {
  const queue = new Queue(o.queueName, { connection: o.connection, prefix: o.prefix });
  queue.on('error', (err) => o.redisOutage.error(err, 'maintenance queue error'));
  const log = o.logger.child({ module: 'maintenance' });
  // PostgreSQL up but refusing the jobs (a full disk): a line per job and reason, not one per run.
  const pgFailures = createPgTaskLog(log, o.pgOutage);

  /**
   * What the partitions job keeps, carried in its schedule's job data: the last writer to start sets
   * it for all of them, as with the intervals. Each writer used its own: two writers with different
   * METRICS_RETENTION_DAYS (a rolling restart to change it) dropped and re-created the same days in
   * turn, deleting stored pushes one considered kept. A job without them (added by an older writer)
   * runs with this writer's.
   */
  const own: PartitionSettings = { retentionDays: o.retentionDays, daysAhead: o.daysAhead };
  const settingsOf = (data: unknown): PartitionSettings => {
    const d = data as Partial<PartitionSettings> | undefined;
    return Number.isInteger(d?.retentionDays) && Number.isInteger(d?.daysAhead)
      ? { retentionDays: d!.retentionDays!, daysAhead: d!.daysAhead! }
      : own;
  };

  /** `today`: the run's UTC date ('YYYY-MM-DD'), read once for the partitions and the retention. */
  const partitions = async (settings: PartitionSettings, today: string) => {
    // Each partition created, dropped or skipped (with the reason) is logged as it happens.
    const result = await maintainPartitions(o.pool, { ...settings, today, logger: log });
    log.info(result, 'partition maintenance done');
    return result;
  };

  const retention = async (settings: PartitionSettings, today: string) => {
    // Cut where the daily partitions are (RETENTION_START), so nothing outlives or predeceases the
    // rows it describes. Heartbeat history and push minutes are kept for the uptime window too.
    const days = settings.retentionDays;
    const activityHours = o.uptimeWindowHours + 24;
    // Ledger rows are kept as long as the metrics: an admin may retry a dead-lettered job days later,
    // and its already-stored pushes must still be recognised. A push older than that is not stored
    // at all (INSERT_LEDGER's expiry), so the ledger need not remember it. Deleted in slices to keep
    // locks short.
    let ledger = 0;
    for (;;) {
      const { rowCount } = await o.pool.query(PRUNE_LEDGER, [days, today]);
      ledger += rowCount ?? 0;
      if ((rowCount ?? 0) < 10000) break;
    }
    // Fold the pending cells first: PRUNE_ROLLUP reaches only collector_metrics_rollup, and a cell
    // still pending for a day past the retention (its batch committed within the last fold period,
    // or while no fold ran) was folded in after the prune — a rollup row for a day whose partition
    // was just dropped, kept until the next run, counted again if that push was ever stored anew.
    await o.pool.query(FOLD_ROLLUP);
    const rollup = await o.pool.query(PRUNE_ROLLUP, [days, today]);
    const history = await o.pool.query(pruneActivity('collector_heartbeats'), [days, activityHours, today]);
    const pushMinutes = await o.pool.query(pruneActivity('collector_push_minutes'), [days, activityHours, today]);
    const commands = await o.pool.query(PRUNE_COMMANDS, [days, today]);
    const deliveries = await o.pool.query(PRUNE_COMMAND_DELIVERIES, [days, today]);
    // Revoked tokens an hour past their expiry leave the deny set (the edges drop them at their next
    // load); then token records that expired before the retention's start go. In this order, so the
    // deny set never holds a jti whose record, the proof that it expired, is gone.
    const deniedJtis = await pruneDeniedJtis(o.pool, o.connection, o.deniedJtisKey);
    const tokens = await o.pool.query(PRUNE_TOKENS, [days, today]);
    const result = {
      ledger,
      rollup: rollup.rowCount ?? 0,
      heartbeats: history.rowCount ?? 0,
      pushMinutes: pushMinutes.rowCount ?? 0,
      commands: commands.rowCount ?? 0,
      commandDeliveries: deliveries.rowCount ?? 0,
      deniedJtis,
      tokens: tokens.rowCount ?? 0,
    };
    log.info(result, 'retention done');
    return result;
  };

  const sweep = async () => {
    // Redis only, first: a PostgreSQL outage does not leave orphaned large-push bodies filling Redis;
    // nor does a Redis error here keep the collectors' statuses from being swept.
    let pushBlobs = 0;
    try {
      pushBlobs = await sweepPushBlobs(o.connection, o.blobSweep);
      if (pushBlobs > 0) log.info({ pushBlobs }, 'deleted large-push bodies whose job is gone');
    } catch (err) {
      o.redisOutage.error(err, 'large-push body sweep failed; it runs again with the next sweep');
    }
    let unreadRetried = 0;
    try {
      unreadRetried = await o.retryUnread();
    } catch (err) {
      o.redisOutage.error(
        err,
        'the check of dead letters an older writer could not read failed; it runs again with the next sweep',
      );
    }
    // Heartbeats the edges took that no flush applied yet are signs of life: applied first (after
    // this writer's flush in progress), and those still on their way (claimed by another writer's
    // flush, dirty again since, or refused by a failing flush) count with their time: within
    // 2 × interval they keep their collector out of the sweep, older ones do not. Should
    // Redis refuse the flush, the sweep goes on with what PostgreSQL has, as it did before (a
    // PostgreSQL error fails the sweep's own statement next).
    try {
      // (Nothing to write says nothing of PostgreSQL.)
      if ((await o.flushHeartbeats()) > 0) pgFailures.succeeded('heartbeat flush before the inactivity sweep');
    } catch (err) {
      if (isRedisError(err)) o.redisOutage.error(err, 'heartbeat flush before the inactivity sweep failed');
      else
        pgFailures.failed(
          'heartbeat flush before the inactivity sweep',
          err,
          'heartbeat flush before the inactivity sweep failed',
        );
    }
    // Read whether or not the flush got through (a failed one gave its claims back to the dirty set).
    let unflushed: { ids: string[]; seen: (string | null)[] } = { ids: [], seen: [] };
    try {
      unflushed = await o.unflushedHeartbeats();
    } catch (err) {
      o.redisOutage.error(err, 'reading the heartbeats not flushed yet before the inactivity sweep failed');
    }
    const { rows } = await o.pool.query<StatusRow>(SWEEP_INACTIVE, [unflushed.ids, unflushed.seen]);
    await o.publish(rows);
    const uptime = await o.pool.query(REFRESH_UPTIME, [o.uptimeWindowHours]);
    // The first 20 ids: a fleet-wide outage would otherwise write one line of 10,000 ids.
    if (rows.length)
      log.info(
        { count: rows.length, inactive: rows.slice(0, 20).map((r) => r.id) },
        rows.length > 20 ? `${rows.length} collectors became inactive (the first 20 listed)` : 'collectors became inactive',
      );
    return { inactive: rows.length, uptimeUpdated: uptime.rowCount ?? 0, pushBlobs, unreadRetried };
  };

  const rollup = async () => {
    const { rows } = await o.pool.query<{ folded: string }>(FOLD_ROLLUP);
    return { folded: Number(rows[0]!.folded) };
  };

  /**
   * Retention runs whether or not the partition work got through: a lock timeout on a partition (a
   * long query holding it) must not also keep the ledger, rollups and heartbeat history growing.
   * The job fails with the partitions' error (the worker logs it); a retention error too is logged here.
   * One UTC date for the whole run, read from PostgreSQL once: each step reading its own, a run
   * straddling midnight UTC dropped the partitions by one date and cut the rollups, ledger and
   * activity of the oldest partition it kept by the next.
   */
  const partitionsAndRetention = async (data?: unknown) => {
    const settings = settingsOf(data);
    const { rows } = await o.pool.query<{ today: string }>(UTC_TODAY);
    const today = rows[0]!.today;
    let partitionsResult: Awaited<ReturnType<typeof partitions>> | undefined;
    let partitionsFailure: unknown;
    try {
      partitionsResult = await partitions(settings, today);
    } catch (err) {
      partitionsFailure = err; // what got done before is committed and logged; the rest is retried next run
    }
    let retained: Awaited<ReturnType<typeof retention>> | undefined;
    try {
      retained = await retention(settings, today);
      pgFailures.succeeded('retention');
    } catch (err) {
      if (partitionsFailure === undefined) throw err;
      pgFailures.failed('retention', err, 'retention failed too; it runs again on its schedule');
    }
    if (partitionsFailure !== undefined) throw partitionsFailure;
    return { ...partitionsResult, ...retained };
  };

  const handlers: Record<string, (data?: unknown) => Promise<unknown>> = {
    partitions: partitionsAndRetention,
    sweep,
    rollup,
  };
  // Every series at 0 from the start: an alert on increase(…{outcome="failed"}) missed the first
  // failure, the series appearing with it (no change from "absent" to 1).
  for (const task of Object.keys(handlers))
    for (const outcome of ['ok', 'failed']) o.metrics.maintenanceRuns.inc({ task, outcome }, 0);

  const worker = new Worker(
    o.queueName,
    async (job: Job) => {
      const handler = handlers[job.name];
      if (!handler) return { skipped: `unknown job ${job.name}` };
      const startedAt = Date.now();
      try {
        const result = await handler(job.data);
        o.metrics.maintenanceRuns.inc({ task: job.name, outcome: 'ok' });
        o.pgOutage.recovered(startedAt);
        pgFailures.succeeded(`maintenance job ${job.name}`);
        return result;
      } catch (err) {
        o.metrics.maintenanceRuns.inc({ task: job.name, outcome: 'failed' });
        pgFailures.failed(`maintenance job ${job.name}`, err, 'maintenance job failed; it runs again on its schedule', {
          job: job.name,
        });
        throw err;
      }
    },
    {
      connection: o.connection,
      prefix: o.prefix,
      concurrency: 1,
      autorun: false,
      removeOnComplete: { count: 50 },
      removeOnFail: { count: 50 },
    },
  );
  pauseAfterFailedFetch(worker);
  worker.on('error', (err) => o.redisOutage.error(err, 'maintenance worker error'));

  const schedules = [
    ['partitions', o.partitionsEveryMs, 'WRITER_MAINTENANCE_INTERVAL_MS'],
    ['sweep', o.sweepEveryMs, 'WRITER_SWEEP_INTERVAL_MS'],
    ['rollup', o.rollupEveryMs, 'WRITER_ROLLUP_FOLD_MS'],
  ] as const;
  /** A schedule's job: the partitions job carries this writer's settings. */
  const template = (name: string) => (name === 'partitions' ? { name, data: own } : { name });

  /**
   * The schedules live only in Redis. A Redis that comes back empty (a failover to a replica that
   * had not synced, a restart without persistence, a FLUSHALL) has none, and nothing would run again
   * until a writer restarted: no partitions ahead (rows pile into DEFAULT), no retention, no rollup,
   * no inactivity sweep. So each writer checks as often as the most frequent schedule runs (at most
   * every 10 s) and puts back any that is missing, with the settings it started with.
   */
  let checker: NodeJS.Timeout | undefined;
  let checking = false;
  const epoch = dataEpoch(o.connection, o.dataEpochKey);
  const restoreMissingSchedules = async () => {
    if (checking) return;
    checking = true;
    try {
      const finding = await epoch.check();
      if (finding) log.error(`${dataEpochMessage(finding)}; jobs this writer holds are stored, then found gone`);
      const missing: string[] = [];
      for (const [name, every] of schedules) {
        if (await queue.getJobScheduler(name)) continue;
        await queue.upsertJobScheduler(name, { every }, template(name));
        missing.push(name);
      }
      if (missing.length)
        log.warn(
          { jobs: missing },
          `maintenance schedules missing from Redis (emptied, or failed over to a replica without them): re-created ${missing.join(', ')}`,
        );
    } catch (err) {
      o.redisOutage.error(err, 'maintenance schedule check failed; retrying');
    } finally {
      checking = false;
    }
  };

  return {
    queue,
    worker,
    async start() {
      // A new schedule runs at once by itself; a kept one keeps its next run (see below).
      let kept = false;
      for (const [name, every, variable] of schedules) {
        // One schedule per job for all writers: the last to start sets it, for every writer and
        // after it exits. Writers started with different settings overrode each other silently.
        const scheduler = await queue.getJobScheduler(name);
        if (name === 'partitions') kept = scheduler !== undefined;
        const previous = scheduler?.every;
        if (previous !== undefined && previous !== every)
          log.warn(
            { job: name, previousEveryMs: Number(previous), everyMs: every },
            `the ${name} schedule, shared by all writers, changes from every ${previous} ms to ${every} ms (this writer's ${variable}); give every writer the same setting`,
          );
        if (name === 'partitions' && scheduler) {
          const previous = settingsOf(scheduler.template?.data);
          if (previous.retentionDays !== own.retentionDays || previous.daysAhead !== own.daysAhead)
            log.warn(
              { previous, settings: own },
              `partition maintenance, shared by all writers, changes from METRICS_RETENTION_DAYS=${previous.retentionDays} PARTITION_DAYS_AHEAD=${previous.daysAhead} ` +
                `to ${own.retentionDays} and ${own.daysAhead} (this writer's); give every writer the same settings`,
            );
        }
        await queue.upsertJobScheduler(name, { every }, template(name));
      }
      // A schedule keeps its next run across restarts, up to an interval away: a writer that was
      // down (or a stack restarted) would leave expired partitions, DEFAULT rows and the ledger as
      // they are until then. One run at start too; writers starting together add one between them
      // (deduplicated until it has run).
      if (kept) await queue.add('partitions', own, { deduplication: { id: 'partitions-at-start' } });
      void worker.run().catch((err: unknown) => log.error({ err }, 'maintenance worker stopped'));
      await epoch.check().catch(() => undefined);
      const checkEvery = Math.max(1000, Math.min(10_000, ...schedules.map(([, every]) => every)));
      checker = setInterval(() => void restoreMissingSchedules(), checkEvery);
      checker.unref();
    },
    /** For tests and operators: run a job body now in this process. */
    runNow: (name: 'partitions' | 'sweep' | 'rollup') => handlers[name]!(),
    async close() {
      clearInterval(checker);
      await worker.close();
      await queue.close();
    },
  };
}

export type Maintenance = ReturnType<typeof createMaintenance>;
