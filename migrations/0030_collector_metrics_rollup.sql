-- 0030 (writer): per-minute rollup of stored metric rows.
--
-- Design (services/writer/README.md "Rollup"): the writer computes each batch's rollup in memory and
-- upserts it in the SAME transaction as the COPY, and stores the batch's rows with processed = true
-- and processed_at set. So `processed` means "counted in collector_metrics_rollup", no row is ever
-- rewritten by an UPDATE after the COPY (an UPDATE per row would cost about as much as the COPY), and
-- the rollup can never double-count: it commits or rolls back together with the rows and the ledger.
-- Rows written by anything else (psql, an older writer) keep processed = false; they are not rolled up.
--
-- bucket is the UTC minute of received_at (the partition key, i.e. when the central accepted the
-- push), not the collector's own timestamp, so a collector with a wrong clock cannot scatter buckets.
-- calls / total_time_ms are sums over the pg_query_stats elements' `queries` of that minute as the
-- collector reported them (pg_stat_statements values are cumulative counters: dashboards take
-- differences between buckets); mean_time_ms is derived so it can never disagree with its inputs.
-- No foreign key to collectors for the same reason as collector_metrics (per-row cost, soft deletes).
CREATE TABLE collector_metrics_rollup (
    collector_id uuid NOT NULL,
    metric_type varchar(100) NOT NULL,
    bucket timestamptz NOT NULL,
    row_count bigint NOT NULL,
    record_count bigint NOT NULL,
    calls bigint,
    total_time_ms double precision,
    mean_time_ms double precision GENERATED ALWAYS AS (total_time_ms / NULLIF(calls, 0)) STORED,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT collector_metrics_rollup_pkey PRIMARY KEY (collector_id, metric_type, bucket)
);
-- Retention deletes by bucket; dashboards read "one collector, a time range" through the primary key
-- prefix, and "the whole fleet, a time range" through this index.
CREATE INDEX idx_collector_metrics_rollup_bucket ON collector_metrics_rollup (bucket);
