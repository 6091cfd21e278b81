import { DENIED_AFTER_EXPIRY } from '@pga/db';

/** The writer's SQL, named (STYLE.md: long SQL in clearly named constants). Arrays come in via unnest. */

/**
 * The start of what `METRICS_RETENTION_DAYS` (`days`, a SQL expression) keeps: midnight UTC `days`
 * days before `today` (a SQL date; by default PostgreSQL's UTC date), the bound of the daily
 * partitions (migration 0037 drops a day's partition once `day < today - days`). Everything
 * retention prunes is cut there: a rolling `now() - days` deleted rollups and ledger entries up to a
 * day before the rows they belong to, which were still stored. The partitions job passes the date
 * its run read once, the one its partition drops used (migrations/0051): each statement reading its
 * own now(), a run straddling midnight UTC cut these a day later than the partitions.
 */
export const RETENTION_START = (days: string, today = "(now() AT TIME ZONE 'UTC')::date") =>
  `((${today} - ${days})::timestamp AT TIME ZONE 'UTC')`;

/** The UTC date of PostgreSQL's clock ('YYYY-MM-DD', whatever the session's DateStyle): a partitions run reads it once. */
export const UTC_TODAY = `SELECT to_char((now() AT TIME ZONE 'UTC')::date, 'YYYY-MM-DD') AS today`;

/**
 * Records the batch's push ids; returns each id with `expired`, and stores only the ids returned not
 * expired (exactly-once, issue 5 §2). An id already in the ledger is a redelivery, a dead letter retried
 * or a replay the edge could not answer itself: not stored again. Unless its recorded acceptance is at
 * least the edge's replay window ($6 seconds, 24 h by default) older than this one: by CONTRACT.md that
 * is a new push under the same push_id / key / identical body (e.g. a collector whose push ids restart
 * from 1), so the entry is renewed and the push stored. The ids must be distinct (ON CONFLICT DO UPDATE
 * may not touch a row twice); a redelivery carries the original received_at, so it never qualifies.
 *
 * A push accepted before the retention's start ($7 days, RETENTION_START, by PostgreSQL's clock as
 * the retention job judges) is `expired`: neither recorded nor stored. Its rows would be past retention already, and
 * its ledger entry may be gone (a dead letter retried weeks later), so the ledger could not tell
 * whether it was stored before. Retention deletes an entry only once its received_at is past the
 * retention too, so for every push not expired the ledger still knows.
 */
export const INSERT_LEDGER = `
WITH push AS (
  SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::int[], $5::text[])
    AS p(push_id, collector_id, received_at, row_count, checksum)
), recorded AS (
  INSERT INTO ingest_ledger AS l (push_id, collector_id, received_at, row_count, checksum)
  SELECT * FROM push WHERE push.received_at >= ${RETENTION_START('$7::int')}
  ON CONFLICT (push_id) DO UPDATE
     SET received_at = EXCLUDED.received_at, row_count = EXCLUDED.row_count, checksum = EXCLUDED.checksum,
         committed_at = now()
   WHERE l.received_at <= EXCLUDED.received_at - make_interval(secs => $6)
  RETURNING push_id
)
SELECT push_id, false AS expired FROM recorded
UNION ALL
SELECT push_id, true FROM push WHERE push.received_at < ${RETENTION_START('$7::int')}`;

/**
 * Deletes up to 10,000 ledger entries past the retention ($1 days before the date $2, RETENTION_START). Both times must be past
 * it: committed_at for the BRIN index (0034), received_at because that is what INSERT_LEDGER's expiry
 * compares, and received_at is the edge's clock — an edge running ahead of PostgreSQL can give a push a
 * received_at later than its committed_at, and its entry must outlive the push's retention.
 */
export const PRUNE_LEDGER = `
DELETE FROM ingest_ledger WHERE push_id IN (
  SELECT push_id FROM ingest_ledger
   WHERE committed_at < ${RETENTION_START('$1::int', '$2::date')} AND received_at < ${RETENTION_START('$1::int', '$2::date')} LIMIT 10000)`;

/** Rollup cells past the retention ($1 days before the date $2), cut where the rows' partitions are. */
export const PRUNE_ROLLUP = `DELETE FROM collector_metrics_rollup WHERE bucket < ${RETENTION_START('$1::int', '$2::date')}`;

/**
 * Heartbeat history or push minutes past both the retention ($1 days before the date $3) and the
 * uptime window plus a day ($2 hours): uptime reads them back that far.
 */
export const pruneActivity = (table: 'collector_heartbeats' | 'collector_push_minutes') =>
  `DELETE FROM ${table} WHERE minute < LEAST(${RETENTION_START('$1::int', '$3::date')}, now() - make_interval(hours => $2))`;

/**
 * Of the jtis $1 (from Redis's deny set), those whose token expired over DENIED_AFTER_EXPIRY ago:
 * no edge accepts them any more by their `exp`, so the deny set need not hold them. A jti with no
 * row is kept (it cannot be known to have expired).
 */
export const EXPIRED_DENIED_JTIS = `
SELECT jti::text FROM collector_tokens WHERE jti = ANY($1::uuid[]) AND expires_at < now() - ${DENIED_AFTER_EXPIRY}`;

/**
 * Issued-token records that expired before the retention's start ($1 days before the date $2): an expired token is
 * refused by its `exp` whether or not its row exists. Run only after the deny set was pruned, so no
 * jti stays in it without the row that says it expired.
 */
export const PRUNE_TOKENS = `DELETE FROM collector_tokens WHERE expires_at < ${RETENTION_START('$1::int', '$2::date')}`;

/** Commands past the retention ($1 days before the date $2) that no longer wait: delivered, dropped or expired. */
export const PRUNE_COMMANDS = `
DELETE FROM collector_commands
 WHERE requested_at < ${RETENTION_START('$1::int', '$2::date')}
   AND (delivered_at IS NOT NULL OR dropped_at IS NOT NULL OR expires_at < now())`;

/**
 * The record of a command's delivery (migrations/0031, one row per command a heartbeat answer
 * carried) goes with it: delivered before the retention's start, so its command, requested before
 * that, went too (PRUNE_COMMANDS). It was kept for good.
 */
export const PRUNE_COMMAND_DELIVERIES = `
DELETE FROM collector_command_deliveries WHERE delivered_at < ${RETENTION_START('$1::int', '$2::date')}`;

export const COPY_METRICS = `COPY collector_metrics
  (collector_id, push_id, metric_type, database_name, metric_data, received_at, record_count, checksum, processed, processed_at)
  FROM STDIN`;

/**
 * Within the inactivity sweep's threshold (2 × collection_interval before now()) of `ts`: the sweep
 * would not mark the collector inactive for it. Only such a report brings an `inactive` collector
 * back; an older one (a backlog, a dead letter retried days later) would be swept again at once, a
 * flap and a false live-status event.
 */
const FRESH = (ts: string) => `${ts} >= now() - make_interval(secs => 2 * c.collection_interval)`;

/**
 * One statement for every collector of the batch. The MATERIALIZED CTE locks the rows in id order
 * first, so two writers updating overlapping collectors queue instead of deadlocking.
 * `pending` becomes `active` on a push, `inactive` only on a fresh one (FRESH); neither while
 * deleted. `error` stays until a heartbeat reports active. `last_collection_count` is the newest
 * push's, whatever order batches commit in.
 */
export const UPDATE_COLLECTORS_AFTER_PUSH = `
WITH b AS (
  -- received_at is the accepting edge's clock: one running ahead must not set a last_metric_at in
  -- the future, which kept the collector "fresh" (never inactive) until that time came.
  SELECT id, LEAST(t, now()) AS last_metric_at, rows, pushes, last_count
    FROM unnest($1::uuid[], $2::timestamptz[], $3::bigint[], $4::bigint[], $5::int[]) AS b(id, t, rows, pushes, last_count)
), locked AS MATERIALIZED (
  SELECT c.id, c.status AS old_status FROM collectors c WHERE c.id = ANY($1::uuid[]) ORDER BY c.id FOR UPDATE
)
UPDATE collectors c SET
  last_metric_at = GREATEST(c.last_metric_at, b.last_metric_at),
  metrics_collected = c.metrics_collected + b.rows,
  success_count = c.success_count + b.pushes,
  -- A batch holding only older pushes (a backlog, a retried dead letter) leaves the latest count.
  last_collection_count = CASE WHEN c.last_metric_at IS NULL OR b.last_metric_at >= c.last_metric_at
                               THEN b.last_count ELSE c.last_collection_count END,
  -- Late pushes of a collector in the recycle bin are stored, but do not bring it back to life.
  status = CASE WHEN c.deleted_at IS NULL
                 AND (c.status = 'pending' OR (c.status = 'inactive' AND ${FRESH('b.last_metric_at')}))
                THEN 'active' ELSE c.status END
FROM b JOIN locked l ON l.id = b.id
WHERE c.id = b.id
RETURNING c.id, c.status, l.old_status, c.last_heartbeat, c.last_metric_at, c.metrics_collected`;

/**
 * Writes the batch's per-minute rollup cells as ONE row of parallel arrays (migrations/0033): a
 * single tuple per batch, no index, no conflict check, no lock another batch could wait for.
 */
export const INSERT_ROLLUP_BATCH = `
INSERT INTO collector_metrics_rollup_batch (collector_ids, metric_types, buckets, row_counts, record_counts, calls, total_time_ms, snapshot_ats)
VALUES ($1::uuid[], $2::text[], $3::timestamptz[], $4::bigint[], $5::bigint[], $6::bigint[], $7::float8[], $8::timestamptz[])`;

/** Folds the committed deltas into collector_metrics_rollup (one atomic statement, see 0032). */
export const FOLD_ROLLUP = 'SELECT pga_fold_rollup_deltas() AS folded';

/**
 * Heartbeat flush: one statement for every flushed collector. Reported `error` → status error;
 * a heartbeat without error brings an error/inactive collector back to active, or to `pending` if it
 * never pushed (admin issue: "pending until the first push"; the admin list computes it the same).
 * An `inactive` collector changes only on a fresh heartbeat (FRESH). A collector in the recycle bin
 * keeps its status (as on a push): the sweep skips it, so nothing would set it back.
 * avg_collection_time_ms is an exponentially weighted mean (weight 0.2 for each report). The
 * collection times ($10–$12: collector, heartbeat time, ms; one row per report, the edge's
 * keys.heartbeatCollectionTimes, and from an older edge the hash's one at its last_seen) applied are
 * those newer than the collector's last_heartbeat (as locked: a flush that committed meanwhile
 * counts) and not newer than the flushed hash: so none twice, whichever writer flushes which hash
 * when, and none after its hash (the reports up to a hash's time are removed after COMMIT). n reports
 * of mean m move the mean as n reports of m one after the other would.
 *
 * Applied only when the hash is newer than the last heartbeat applied (`last_heartbeat`, written
 * by nothing else): the same hash can be flushed twice (a heartbeat arriving between a flush's claim
 * and its read re-marks the id dirty; a writer dying or losing Redis between COMMIT and ZREM leaves
 * its claim to be recovered; a COMMIT whose answer was lost is retried), and error_count + 1 and the
 * mean must not count it again, nor an old hash undo a status set since (the sweep's `inactive`).
 * last_seen is the edge's clock: with edges whose clocks differ by more than a collector's
 * heartbeat interval, a heartbeat could be taken for an old one and skipped.
 */
export const FLUSH_HEARTBEATS = `
WITH hb AS (
  SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::text[], $5::int[], $6::text[])
    AS hb(id, seen, status, last_error, metrics_count, version)
), locked AS MATERIALIZED (
  SELECT c.id, c.status AS old_status, c.last_heartbeat
    FROM collectors c WHERE c.id = ANY($1::uuid[]) ORDER BY c.id FOR UPDATE
), ct AS (
  -- The reports this hash brings: after the last heartbeat applied, up to the hash's time.
  SELECT r.id, count(*) AS n, avg(r.ms::float8) AS mean, max(r.ms) AS max
    FROM unnest($10::uuid[], $11::timestamptz[], $12::int[]) AS r(id, at, ms)
    JOIN hb ON hb.id = r.id
    JOIN locked l ON l.id = r.id
   WHERE r.at <= hb.seen AND (l.last_heartbeat IS NULL OR r.at > l.last_heartbeat)
   GROUP BY r.id
), history AS (
  -- The latest heartbeat's minute and the minutes the edge recorded since the last flush ($7–$9,
  -- the oldest HEARTBEAT_MINUTES_PER_FLUSH of its heartbeatMinutes ZSET; the rest come with the next
  -- flushes, the same hash then re-read and its minute upserted again): one row per minute, 'error'
  -- if any heartbeat in it said so, in this statement or an earlier one.
  INSERT INTO collector_heartbeats (collector_id, minute, status)
  SELECT a.id, a.minute, CASE WHEN bool_or(a.status = 'error') THEN 'error' ELSE 'active' END
    FROM (SELECT hb.id, date_trunc('minute', hb.seen) AS minute, coalesce(hb.status, 'active') AS status FROM hb
          UNION ALL
          SELECT m.id, date_trunc('minute', m.minute), m.status
            FROM unnest($7::uuid[], $8::timestamptz[], $9::text[]) AS m(id, minute, status)) a
    JOIN locked l ON l.id = a.id
   GROUP BY a.id, a.minute
  ON CONFLICT (collector_id, minute) DO UPDATE SET status = EXCLUDED.status
   WHERE collector_heartbeats.status <> 'error'
)
UPDATE collectors c SET
  last_heartbeat = GREATEST(c.last_heartbeat, hb.seen),
  status = CASE
    WHEN c.deleted_at IS NOT NULL THEN c.status
    WHEN c.status = 'inactive' AND NOT (${FRESH('hb.seen')}) THEN c.status
    WHEN hb.status = 'error' THEN 'error'
    WHEN c.status IN ('error', 'inactive') THEN CASE WHEN c.last_metric_at IS NULL THEN 'pending' ELSE 'active' END
    ELSE c.status END,
  last_error = CASE WHEN hb.status = 'error' THEN coalesce(hb.last_error, c.last_error) ELSE c.last_error END,
  error_count = c.error_count + CASE WHEN hb.status = 'error' THEN 1 ELSE 0 END,
  -- ct.n reports of mean ct.mean, each weighted 0.2 in turn (0.8 ^ n of the old mean is left; past
  -- 200 reports nothing is, and a larger power would underflow float8). Capped to int: a value out
  -- of range would fail the statement of the whole batch.
  avg_collection_time_ms = CASE WHEN ct.n IS NULL THEN c.avg_collection_time_ms
    ELSE LEAST(round(coalesce(c.avg_collection_time_ms, ct.mean) * power(0.8::float8, LEAST(ct.n, 200))
                     + ct.mean * (1 - power(0.8::float8, LEAST(ct.n, 200)))), 2147483647)::int END,
  max_collection_time_ms = GREATEST(c.max_collection_time_ms, ct.max),
  last_collection_count = coalesce(hb.metrics_count, c.last_collection_count),
  agent_version = coalesce(hb.version, c.agent_version)
FROM hb JOIN locked l ON l.id = hb.id LEFT JOIN ct ON ct.id = hb.id
WHERE c.id = hb.id AND (c.last_heartbeat IS NULL OR hb.seen > c.last_heartbeat)
RETURNING c.id, c.status, l.old_status, c.last_heartbeat, c.last_metric_at, c.metrics_collected`;

/**
 * Collectors silent for more than 2 × collection_interval become inactive (returns those changed):
 * active and error ones, and pending ones that heartbeated but never pushed (a collector never heard
 * from at all stays pending: registered, its agent not running yet). A heartbeat brings an inactive
 * collector back to pending or active (FLUSH_HEARTBEATS).
 * The rows are locked in id order like the batch and heartbeat statements, and a row locked by one of
 * them is skipped, not waited for: it is being written right now (so not silent), and waiting would
 * queue the sweep behind every batch in flight, or deadlock with one (40P01). The next sweep sees it.
 * $1, $2: collectors whose heartbeats Redis holds and PostgreSQL may not yet (claimed by a flush in
 * progress, or dirty) and their latest heartbeat's time (the hash's last_seen, capped at now(): an
 * edge whose clock runs ahead must not keep a collector fresh): a sign of life like last_heartbeat.
 * A heartbeat on its way is not silence; one older than 2 × interval is, whether or not a flush gets
 * it into PostgreSQL (while flushes fail, a dirty entry used to keep a silent collector unswept).
 */
export const SWEEP_INACTIVE = `
WITH unflushed AS (
  SELECT id, LEAST(max(seen), now()) AS seen FROM unnest($1::uuid[], $2::timestamptz[]) AS u(id, seen) GROUP BY id
), silent AS MATERIALIZED (
  SELECT c.id, c.status AS old_status FROM collectors c LEFT JOIN unflushed u ON u.id = c.id
   WHERE (c.status IN ('active', 'error') OR (c.status = 'pending' AND c.last_heartbeat IS NOT NULL))
     AND c.deleted_at IS NULL
     AND NOT (${FRESH('GREATEST(c.last_heartbeat, c.last_metric_at, c.registered_at, u.seen)')})
   ORDER BY c.id FOR UPDATE OF c SKIP LOCKED
)
UPDATE collectors c SET status = 'inactive'
  FROM silent s WHERE c.id = s.id
RETURNING c.id, c.status, s.old_status, c.last_heartbeat, c.last_metric_at, c.metrics_collected`;

/**
 * uptime_percentage = share of the window's slots (max(60 s, collection_interval) long) that saw a
 * heartbeat or a push, counted from max(window start, registration). README "Uptime". Push minutes
 * come from collector_push_minutes (one row per collector and minute, filled by the rollup fold;
 * migration 0036) and the few cells not folded yet — not from the rollup, which has a row per metric
 * type and minute (~11× as many to read and de-duplicate every sweep). Only the rows
 * whose value changed are locked, in id order, skipping those a batch holds (as SWEEP_INACTIVE):
 * their uptime is refreshed by the next sweep.
 */
export const REFRESH_UPTIME = `
WITH win AS (SELECT now() - make_interval(hours => $1::int) AS since),
activity AS (
  SELECT h.collector_id, h.minute AS t FROM collector_heartbeats h, win WHERE h.minute >= win.since
  UNION
  SELECT m.collector_id, m.minute FROM collector_push_minutes m, win WHERE m.minute >= win.since
  UNION
  SELECT p.collector_id, p.bucket FROM collector_metrics_rollup_pending p, win WHERE p.bucket >= win.since
),
slots AS (
  SELECT a.collector_id, count(DISTINCT floor(extract(epoch FROM a.t) / GREATEST(60, c.collection_interval))) AS up
    FROM activity a JOIN collectors c ON c.id = a.collector_id
   GROUP BY a.collector_id
),
calc AS (
  SELECT c.id,
         LEAST(100, round(100.0 * coalesce(s.up, 0)
           / GREATEST(1, ceil(extract(epoch FROM now() - GREATEST(win.since, c.registered_at))
                              / GREATEST(60, c.collection_interval))), 2)) AS pct
    FROM collectors c CROSS JOIN win LEFT JOIN slots s ON s.collector_id = c.id
   WHERE c.deleted_at IS NULL
),
changed AS MATERIALIZED (
  SELECT c.id, calc.pct FROM collectors c JOIN calc ON calc.id = c.id
   WHERE c.uptime_percentage IS DISTINCT FROM calc.pct
   ORDER BY c.id FOR UPDATE OF c SKIP LOCKED
)
UPDATE collectors c SET uptime_percentage = changed.pct
  FROM changed WHERE c.id = changed.id`;
