import type { Logger } from '@pga/logger';
import { isDatabaseUnavailable } from './pg-errors';
import type { Pool } from './pool';
import { withTransaction } from './transaction';

/** A step of partition maintenance left for the next run, and why. */
export interface SkippedPartitionStep {
  partition: string;
  action: 'create' | 'drop';
  reason: string;
}

export interface PartitionMaintenanceResult {
  created: string[];
  dropped: string[];
  /** Partitions not created or dropped this run (a lock not got in time, a query using it): retried next run. */
  skipped: SkippedPartitionStep[];
  /** Rows moved out of the DEFAULT partition into partitions created for them. */
  movedFromDefault: number;
  /** Rows deleted from the DEFAULT partition because they are older than the retention. */
  expiredFromDefault: number;
}

/** Partition DDL waits at most this long for its lock, so it never holds up ingest (it is tried again later). */
export const PARTITION_DDL_LOCK_TIMEOUT = '2s';

const isLockTimeout = (err: unknown) => (err as { code?: unknown } | null)?.code === '55P03';
/**
 * Why a day's partition could not be created. An overlap (42P17, "would overlap partition …", naming
 * the partition in the way) is a partition bounded off its UTC day: the daily ones are repaired by
 * pga_repair_metric_partition_bounds() (each run calls it first); any other is for an operator.
 */
const describeCreateFailure = (err: unknown) => {
  const message = err instanceof Error ? err.message : String(err);
  if ((err as { code?: unknown } | null)?.code !== '42P17') return message;
  return (
    `${message}: that partition's bounds are not those of a UTC day. A daily one (collector_metrics_pYYYYMMDD) ` +
    `is repaired by SELECT * FROM pga_repair_metric_partition_bounds() (migrations/0049); detach or drop any other`
  );
};
const partitionOf = (day: string) => `collector_metrics_p${day.replaceAll('-', '')}`;

/**
 * Creates daily `collector_metrics` partitions `daysAhead` days ahead (and for any day that has rows
 * waiting in the DEFAULT partition) and, only when `retentionDays` is given, drops partitions
 * entirely older than that and deletes DEFAULT rows as old. Without `retentionDays` nothing is
 * dropped: only the writer knows METRICS_RETENTION_DAYS (migrations/0035).
 *
 * First, daily partitions bounded off their UTC day (made before migration 0048 in a session whose
 * DateStyle was not ISO) are bounded to it, their rows moved to their day's partition
 * (pga_repair_metric_partition_bounds, migrations/0049; nothing to do is one catalog query): the day
 * after such a one overlapped it and could not be created. Should it time out, nothing is created
 * this run (the call rejects with 55P03).
 *
 * Each step is its own transaction (the SQL functions of migrations/0037), so what one step did
 * stays done whatever the next one meets: each day's partition ahead (with its DEFAULT rows moved
 * in), each expired partition's drop, the DEFAULT rows' expiry. All DDL waits at most `lockTimeout`
 * for its locks (a lock timeout is SQLSTATE 55P03): a COPY in flight or a long dashboard query must
 * not make ingest queue behind a waiting CREATE or DROP.
 *  - Creating: the first day that times out ends the creating for this run (the next days need the
 *    same lock), and the call rejects with that error — after the drops and the expiry were done. A
 *    day that fails otherwise is skipped, the days after it are created, and the call rejects with
 *    its error in the end.
 *  - Dropping: an expired partition another session uses is skipped without waiting; a DROP that
 *    times out (waiting for collector_metrics itself) is skipped with the ones after it, so a run
 *    holds up COPYs for at most one `lockTimeout`. Skipped drops are in `skipped`, retried next run.
 * With a `logger`, each partition created, dropped or skipped is logged.
 *
 * `today` ('YYYY-MM-DD', UTC): the date every step counts from, read once by the caller (the writer's
 * run, whose retention cuts by the same date); not after PostgreSQL's own (refused). Without it, each
 * step reads PostgreSQL's date itself, so a call straddling midnight UTC uses two. A database not
 * migrated to 0051 yet has no steps that take a date: they then read their own, as before.
 */
export async function maintainPartitions(
  pool: Pool,
  {
    daysAhead = 7,
    retentionDays,
    lockTimeout = PARTITION_DDL_LOCK_TIMEOUT,
    logger,
    today,
  }: { daysAhead?: number; retentionDays?: number; lockTimeout?: string; logger?: Logger; today?: string } = {},
): Promise<PartitionMaintenanceResult> {
  const step = <R>(sql: string, params: unknown[]) =>
    withTransaction(pool, async (client) => {
      await client.query("SELECT set_config('lock_timeout', $1, true)", [lockTimeout]);
      return (await client.query<R & Record<string, unknown>>(sql, params)).rows;
    });
  // The steps of migration 0051 take the date (NULL: PostgreSQL's); those of 0037 read their own.
  const dated =
    today !== undefined &&
    (await pool.query<{ ok: boolean }>("SELECT to_regprocedure('pga_expired_metric_partitions(integer,date)') IS NOT NULL AS ok"))
      .rows[0]!.ok;
  const on = (params: unknown[]) => (dated ? [...params, today] : params);
  const withDate = (call: string, next: number) => (dated ? call.replace(/\)$/, `, $${next}::date)`) : call);
  const result: PartitionMaintenanceResult = {
    created: [],
    dropped: [],
    skipped: [],
    movedFromDefault: 0,
    expiredFromDefault: 0,
  };
  const skip = (partitions: string[], action: SkippedPartitionStep['action'], reason: string) => {
    for (const partition of partitions) {
      result.skipped.push({ partition, action, reason });
      logger?.warn({ partition, action, reason }, `partition ${action} skipped; retried next run`);
    }
  };
  let failure: unknown;

  try {
    // Daily partitions an earlier release bounded off their UTC day (migrations/0049) first: the day
    // after such a one, bounded right, overlaps it and cannot be created. Nothing to do is one catalog
    // query; a lock timeout ends the creating for this run, as below.
    try {
      for (const { partition, action } of await step<{ partition: string; action: string }>(
        'SELECT partition, action FROM pga_repair_metric_partition_bounds()',
        [],
      )) {
        if (action === 'created') result.created.push(partition);
        logger?.warn({ partition, action }, `partition ${action}: its bounds were not those of its UTC day`);
      }
    } catch (err) {
      if (isLockTimeout(err)) {
        logger?.warn({ err }, `partition bounds repair skipped: lock timeout (${lockTimeout}); retried next run`);
        throw err;
      }
      // Another failure: the days are still created (those the repair was for then fail, with 42P17).
      // 42883: a database this release has not migrated yet (a writer without WRITER_MIGRATE first).
      // PostgreSQL away or refusing (disk full): the run fails with it, and the caller says so once
      // for the outage; it was an error with a stack at every run.
      if ((err as { code?: unknown } | null)?.code !== '42883') {
        if (!isDatabaseUnavailable(err)) logger?.error({ err }, 'partition bounds repair failed; retried next run');
        failure ??= err;
      }
    }
    const days = (
      await step<{ day: string }>(
        `SELECT to_char(d, 'YYYY-MM-DD') AS day FROM ${withDate('pga_metric_partition_days_to_create($1, $2)', 3)} AS d`,
        on([daysAhead, retentionDays ?? null]),
      )
    ).map((r) => r.day);
    for (const [i, day] of days.entries()) {
      const partition = partitionOf(day);
      try {
        const [row] = await step<{ moved: string | null }>('SELECT pga_create_metric_partition($1::date) AS moved', [day]);
        if (row?.moved == null) continue; // another caller created it meanwhile
        const moved = Number(row.moved);
        result.created.push(partition);
        result.movedFromDefault += moved;
        logger?.info({ partition, movedFromDefault: moved }, 'partition created');
      } catch (err) {
        if (isLockTimeout(err)) {
          skip(days.slice(i).map(partitionOf), 'create', `lock timeout (${lockTimeout})`);
          throw err;
        }
        // Another failure is this day's (an object in the way of its name, its DEFAULT rows): the
        // days after it are still created, and the run rejects with it in the end. It used to end
        // the run, and the days being created oldest first, a past day that could not be created
        // kept every partition ahead from being made: within PARTITION_DAYS_AHEAD days, the whole
        // fleet's rows went into DEFAULT.
        // An overlap (42P17) rejects with the partition in the way and the repair in its message
        // (a start exits with it), keeping its code.
        const reason = describeCreateFailure(err);
        skip([partition], 'create', reason);
        failure ??=
          (err as { code?: unknown } | null)?.code === '42P17'
            ? Object.assign(new Error(reason, { cause: err }), { code: '42P17' })
            : err;
      }
    }
  } catch (err) {
    failure = err;
  }

  if (retentionDays !== undefined) {
    try {
      const expired = (
        await step<{ part: string }>(
          `SELECT part FROM ${withDate('pga_expired_metric_partitions($1)', 2)} AS part`,
          on([retentionDays]),
        )
      ).map((r) => r.part);
      for (const [i, partition] of expired.entries()) {
        let status: string;
        try {
          const [row] = await step<{ status: string }>(
            `SELECT ${withDate('pga_drop_metric_partition($1, $2)', 3)} AS status`,
            on([partition, retentionDays]),
          );
          status = row!.status;
        } catch (err) {
          if (!isLockTimeout(err)) throw err;
          // DROP waited for collector_metrics itself (a long query on the table): the next drops would
          // wait for the same lock, each holding up the COPYs for as long.
          skip([partition], 'drop', `lock timeout (${lockTimeout})`);
          skip(expired.slice(i + 1), 'drop', 'not tried: an earlier drop timed out');
          break;
        }
        if (status === 'dropped') {
          result.dropped.push(partition);
          logger?.info({ partition }, 'partition dropped');
        } else if (status !== 'absent') {
          skip([partition], 'drop', status);
        }
      }
    } catch (err) {
      failure ??= err;
    }
    try {
      const [row] = await step<{ n: string }>(
        `SELECT ${withDate('pga_expire_metric_default_rows($1)', 2)} AS n`,
        on([retentionDays]),
      );
      result.expiredFromDefault = Number(row!.n);
    } catch (err) {
      failure ??= err;
    }
  }

  if (failure !== undefined) throw failure;
  return result;
}
