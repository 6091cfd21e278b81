-- Migrations 0035, 0036, 0037 and 0040 were edited after a release had applied them (0040 only in
-- its comments). The runner accepts those earlier texts (SUPERSEDED_CHECKSUMS in
-- packages/db/src/migrate.ts) so such a database can be upgraded; this migration brings the
-- definitions those edits changed to their current text, whichever text the database applied:
-- - collector_metrics_rollup_live and pga_fold_rollup_deltas (0036): the newest snapshot of a minute
--   wins ties by the larger count;
-- - pga_drop_metric_partition (0037): an autovacuum worker does not count as a holder of the
--   partition.
-- (0035's edits were to pga_maintain_metric_partitions, which 0037 replaces.) On a database that
-- applied the current texts it changes nothing. test/foundation/migrations.test.ts upgrades from
-- every earlier text and compares every function and view with a fresh database.

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

CREATE OR REPLACE FUNCTION pga_drop_metric_partition(part text, retention_days integer)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    rel regclass;
    holders text;
BEGIN
    IF retention_days IS NULL OR retention_days < 1 THEN
        RAISE EXCEPTION 'retention_days must be >= 1';
    END IF;
    IF part !~ '^collector_metrics_p[0-9]{8}$' THEN
        RAISE EXCEPTION '% is not a daily collector_metrics partition', part;
    END IF;
    IF to_date(substring(part FROM '[0-9]{8}$'), 'YYYYMMDD') >= (now() AT TIME ZONE 'UTC')::date - retention_days THEN
        RAISE EXCEPTION '% is within the % days retention', part, retention_days;
    END IF;
    PERFORM pg_advisory_xact_lock(7362100422);
    rel := to_regclass(format('%I.%I', current_schema(), part));
    IF rel IS NULL OR NOT EXISTS (
        SELECT 1 FROM pg_inherits WHERE inhrelid = rel AND inhparent = 'collector_metrics'::regclass
    ) THEN
        RETURN 'absent';
    END IF;
    SELECT string_agg(DISTINCT coalesce(l.pid::text, 'a prepared transaction'), ', ')
      INTO holders
      FROM pg_locks l
     WHERE l.locktype = 'relation'
       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
       AND l.relation = rel
       AND l.pid IS DISTINCT FROM pg_backend_pid()
       -- An autovacuum worker gives way to the DROP (an anti-wraparound one does not: the DROP then
       -- meets its lock_timeout and the partition is skipped like any other in use).
       AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = l.pid AND a.backend_type = 'autovacuum worker');
    IF holders IS NOT NULL THEN
        RETURN 'in use by pid ' || holders;
    END IF;
    EXECUTE format('DROP TABLE %I', part);
    RETURN 'dropped';
END;
$$;
