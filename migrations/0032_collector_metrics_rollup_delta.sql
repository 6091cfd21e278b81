-- 0032 (writer): append-only rollup deltas, folded into collector_metrics_rollup by a job.
--
-- Measured (services/writer/README.md "Rollup"): upserting the batch's rollup cells into
-- collector_metrics_rollup inside the COPY transaction cost about as much as the COPY itself
-- (~38 µs per cell against ~43 µs per metric row; with one push per collector and minute a 2 KB
-- push makes ~4 cells) and every upsert took row locks other batches then waited for. So the
-- writer now INSERTs the batch's cells here instead — no index, no conflict check, no lock
-- contention, still in the same transaction as the rows, the ledger and `processed = true` — and
-- the maintenance job `rollup` folds the deltas into collector_metrics_rollup every few seconds
-- with one DELETE … RETURNING → INSERT … ON CONFLICT statement (atomic: a delta is counted exactly
-- once). collector_metrics_rollup is therefore at most one fold period behind; the view
-- collector_metrics_rollup_live adds the pending deltas for readers that need it exact.
CREATE TABLE collector_metrics_rollup_delta (
    collector_id uuid NOT NULL,
    metric_type varchar(100) NOT NULL,
    bucket timestamptz NOT NULL,
    row_count bigint NOT NULL,
    record_count bigint NOT NULL,
    calls bigint,
    total_time_ms double precision
);

CREATE VIEW collector_metrics_rollup_live AS
SELECT collector_id, metric_type, bucket,
       sum(row_count)::bigint AS row_count,
       sum(record_count)::bigint AS record_count,
       sum(calls)::bigint AS calls,
       sum(total_time_ms) AS total_time_ms,
       sum(total_time_ms) / NULLIF(sum(calls), 0) AS mean_time_ms
  FROM (
    SELECT collector_id, metric_type, bucket, row_count, record_count, calls, total_time_ms FROM collector_metrics_rollup
    UNION ALL
    SELECT collector_id, metric_type, bucket, row_count, record_count, calls, total_time_ms FROM collector_metrics_rollup_delta
  ) r
 GROUP BY collector_id, metric_type, bucket;

-- Folds every committed delta into the rollup; returns the number of deltas folded. The advisory
-- lock makes concurrent calls (a job on each writer, psql) take turns.
CREATE OR REPLACE FUNCTION pga_fold_rollup_deltas()
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(7362100423);
    WITH d AS (
        DELETE FROM collector_metrics_rollup_delta RETURNING *
    ), agg AS (
        SELECT collector_id, metric_type, bucket, count(*) AS deltas,
               sum(row_count) AS row_count, sum(record_count) AS record_count,
               sum(calls) AS calls, sum(total_time_ms) AS total_time_ms
          FROM d GROUP BY collector_id, metric_type, bucket
    ), up AS (
        INSERT INTO collector_metrics_rollup AS r (collector_id, metric_type, bucket, row_count, record_count, calls, total_time_ms)
        SELECT collector_id, metric_type, bucket, row_count, record_count, calls, total_time_ms
          FROM agg ORDER BY collector_id, metric_type, bucket
        ON CONFLICT (collector_id, metric_type, bucket) DO UPDATE SET
            row_count = r.row_count + EXCLUDED.row_count,
            record_count = r.record_count + EXCLUDED.record_count,
            calls = CASE WHEN EXCLUDED.calls IS NULL THEN r.calls ELSE coalesce(r.calls, 0) + EXCLUDED.calls END,
            total_time_ms = CASE WHEN EXCLUDED.total_time_ms IS NULL THEN r.total_time_ms
                                 ELSE coalesce(r.total_time_ms, 0) + EXCLUDED.total_time_ms END,
            updated_at = now()
    )
    SELECT coalesce(sum(deltas), 0) INTO n FROM agg;
    RETURN n;
END;
$$;
