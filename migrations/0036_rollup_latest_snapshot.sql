-- 0036 (writer): a minute's pg_query_stats counters are its latest snapshot, not the sum of them.
--
-- pg_stat_statements' `calls` and `total_time` are cumulative counters. Until now a bucket held the
-- sum of every snapshot received in that minute, so with a collection interval under a minute (or a
-- 60 s one with jitter) one minute held 2 × 1000 + 10 and the next 2 × 1020 + 10: the difference
-- between buckets — what a dashboard plots — counted the totals again instead of the activity, and
-- mean_time_ms mixed running averages. Now a cell holds the counters of its newest snapshot (the
-- push with the latest received_at in that minute; within one push, the sum over its databases), so
-- differences between buckets are the activity between snapshots, as for any sampled counter.
-- row_count and record_count stay sums (rows stored in that minute).
--
-- snapshot_at is the received_at of the push whose counters a cell holds; NULL for cells written
-- before this migration (or by an older writer), which keep adding up as before: a cell with a
-- snapshot_at always replaces one without.
--
-- Also: the minutes with pushes, per collector, for uptime. The uptime refresh (every sweep, 15 s)
-- read them from collector_metrics_rollup, which has a row per metric TYPE and minute — about 11 per
-- push minute for a v3 collector, ~16 million rows a day for 1,000 collectors, all re-read and
-- de-duplicated each time. collector_push_minutes holds one row per collector and minute, filled by
-- the fold, like collector_heartbeats for heartbeats; the refresh reads those two (and the few
-- pending cells not folded yet).
--
-- The fold's own advisory lock first: a writer still running the 0035 fold must not move cells out of
-- the pending tables between the backfill below and the ALTERs (those minutes would be in neither the
-- backfill nor the pending view), nor deadlock with them.
SELECT pg_advisory_xact_lock(7362100423);

CREATE TABLE collector_push_minutes (
    collector_id uuid NOT NULL,
    minute timestamptz NOT NULL,
    CONSTRAINT collector_push_minutes_pkey PRIMARY KEY (collector_id, minute)
);
INSERT INTO collector_push_minutes (collector_id, minute)
SELECT DISTINCT collector_id, bucket FROM collector_metrics_rollup;
CREATE INDEX idx_collector_push_minutes_minute ON collector_push_minutes (minute);

ALTER TABLE collector_metrics_rollup ADD COLUMN snapshot_at timestamptz;
ALTER TABLE collector_metrics_rollup_batch ADD COLUMN snapshot_ats timestamptz[];

DROP VIEW collector_metrics_rollup_live;
DROP VIEW collector_metrics_rollup_pending;

-- Every pending cell, whichever table holds it (the 0032 delta table only ever held legacy cells).
CREATE VIEW collector_metrics_rollup_pending AS
SELECT collector_id, metric_type, bucket, row_count, record_count, calls, total_time_ms, NULL::timestamptz AS snapshot_at
  FROM collector_metrics_rollup_delta
UNION ALL
SELECT u.collector_id, u.metric_type::varchar(100), u.bucket, u.row_count, u.record_count, u.calls, u.total_time_ms, u.snapshot_at
  FROM collector_metrics_rollup_batch b,
       unnest(b.collector_ids, b.metric_types, b.buckets, b.row_counts, b.record_counts, b.calls, b.total_time_ms,
              coalesce(b.snapshot_ats, array_fill(NULL::timestamptz, ARRAY[cardinality(b.collector_ids)])))
         AS u(collector_id, metric_type, bucket, row_count, record_count, calls, total_time_ms, snapshot_at);

-- Folds cells of one (collector, type, minute): rows add up; the counters are those of the newest
-- snapshot, or (only legacy cells, no snapshot_at) their sum as before.
CREATE OR REPLACE VIEW collector_metrics_rollup_live AS
SELECT collector_id, metric_type, bucket,
       sum(row_count)::bigint AS row_count,
       sum(record_count)::bigint AS record_count,
       CASE WHEN max(snapshot_at) IS NULL THEN sum(calls)
            ELSE (array_agg(calls ORDER BY snapshot_at DESC NULLS LAST, calls DESC NULLS LAST))[1] END::bigint AS calls,
       CASE WHEN max(snapshot_at) IS NULL THEN sum(total_time_ms)
            ELSE (array_agg(total_time_ms ORDER BY snapshot_at DESC NULLS LAST, calls DESC NULLS LAST))[1] END AS total_time_ms,
       CASE WHEN max(snapshot_at) IS NULL THEN sum(total_time_ms) / NULLIF(sum(calls), 0)
            ELSE (array_agg(total_time_ms / NULLIF(calls, 0) ORDER BY snapshot_at DESC NULLS LAST, calls DESC NULLS LAST))[1] END AS mean_time_ms,
       max(snapshot_at) AS snapshot_at
  FROM (
    SELECT collector_id, metric_type, bucket, row_count, record_count, calls, total_time_ms, snapshot_at
      FROM collector_metrics_rollup
    UNION ALL
    SELECT collector_id, metric_type, bucket, row_count, record_count, calls, total_time_ms, snapshot_at
      FROM collector_metrics_rollup_pending
  ) r
 GROUP BY collector_id, metric_type, bucket;

CREATE OR REPLACE FUNCTION pga_fold_rollup_deltas()
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(7362100423);
    WITH d AS (
        DELETE FROM collector_metrics_rollup_delta RETURNING collector_id, metric_type, bucket, row_count, record_count, calls, total_time_ms
    ), b AS (
        DELETE FROM collector_metrics_rollup_batch RETURNING *
    ), cells AS (
        SELECT d.*, NULL::timestamptz AS snapshot_at FROM d
        UNION ALL
        SELECT u.* FROM b,
               unnest(b.collector_ids, b.metric_types, b.buckets, b.row_counts, b.record_counts, b.calls, b.total_time_ms,
                      coalesce(b.snapshot_ats, array_fill(NULL::timestamptz, ARRAY[cardinality(b.collector_ids)])))
                 AS u(collector_id, metric_type, bucket, row_count, record_count, calls, total_time_ms, snapshot_at)
    ), agg AS (
        SELECT collector_id, metric_type, bucket, count(*) AS cells,
               sum(row_count) AS row_count, sum(record_count) AS record_count,
               CASE WHEN max(snapshot_at) IS NULL THEN sum(calls)
                    ELSE (array_agg(calls ORDER BY snapshot_at DESC NULLS LAST, calls DESC NULLS LAST))[1] END AS calls,
               CASE WHEN max(snapshot_at) IS NULL THEN sum(total_time_ms)
                    ELSE (array_agg(total_time_ms ORDER BY snapshot_at DESC NULLS LAST, calls DESC NULLS LAST))[1] END AS total_time_ms,
               max(snapshot_at) AS snapshot_at
          FROM cells GROUP BY collector_id, metric_type, bucket
    ), up AS (
        INSERT INTO collector_metrics_rollup AS r (collector_id, metric_type, bucket, row_count, record_count, calls, total_time_ms, snapshot_at)
        SELECT collector_id, metric_type, bucket, row_count, record_count, calls, total_time_ms, snapshot_at
          FROM agg ORDER BY collector_id, metric_type, bucket
        ON CONFLICT (collector_id, metric_type, bucket) DO UPDATE SET
            row_count = r.row_count + EXCLUDED.row_count,
            record_count = r.record_count + EXCLUDED.record_count,
            -- A newer snapshot replaces the counters (on a tie, the larger count: they only grow, as
            -- the view orders them); legacy cells add up.
            calls = CASE WHEN EXCLUDED.snapshot_at > coalesce(r.snapshot_at, '-infinity')
                             OR (EXCLUDED.snapshot_at = r.snapshot_at AND coalesce(EXCLUDED.calls, -1) >= coalesce(r.calls, -1))
                           THEN EXCLUDED.calls
                         WHEN EXCLUDED.snapshot_at IS NULL AND r.snapshot_at IS NULL AND EXCLUDED.calls IS NOT NULL
                           THEN coalesce(r.calls, 0) + EXCLUDED.calls
                         ELSE r.calls END,
            total_time_ms = CASE WHEN EXCLUDED.snapshot_at > coalesce(r.snapshot_at, '-infinity')
                                     OR (EXCLUDED.snapshot_at = r.snapshot_at AND coalesce(EXCLUDED.calls, -1) >= coalesce(r.calls, -1))
                                   THEN EXCLUDED.total_time_ms
                                 WHEN EXCLUDED.snapshot_at IS NULL AND r.snapshot_at IS NULL AND EXCLUDED.total_time_ms IS NOT NULL
                                   THEN coalesce(r.total_time_ms, 0) + EXCLUDED.total_time_ms
                                 ELSE r.total_time_ms END,
            snapshot_at = greatest(r.snapshot_at, EXCLUDED.snapshot_at),
            updated_at = now()
    ), minutes AS (
        INSERT INTO collector_push_minutes (collector_id, minute)
        SELECT DISTINCT collector_id, bucket FROM agg ORDER BY 1, 2
        ON CONFLICT DO NOTHING
    )
    SELECT coalesce(sum(cells), 0) INTO n FROM agg;
    RETURN n;
END;
$$;
