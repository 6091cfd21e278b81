-- 0043: a day's partition can be created while pushes for that day keep arriving in DEFAULT.
--
-- pga_create_metric_partition (0037) moved the day's rows out of DEFAULT (row locks only, the COPYs
-- going on) and then attached the new partition, whose validation scans DEFAULT under ACCESS
-- EXCLUSIVE with a new snapshot. Rows of that day that a COPY committed into DEFAULT after the move's
-- snapshot were found there, and the ATTACH failed: 23514 "updated partition constraint for default
-- partition … would be violated by some row". While ingest kept writing that day (today's partition
-- missing: a database restored from an old backup, maintenance not run for PARTITION_DAYS_AHEAD days;
-- an edge whose clock is days behind) every run failed so — measured: 3 of 3 runs with 5 collectors
-- pushing, each holding the COPYs into DEFAULT up for ~0.9 s — and, the days being created oldest
-- first, the days after it (the partitions ahead) were never created either: the whole fleet's rows
-- went on piling up in DEFAULT. Now the bulk of the rows is moved as before (again while a pass
-- moved 10,000 rows or more, up to 5 passes, as rows keep arriving), then DEFAULT is locked
-- (waiting at most the caller's lock_timeout, as the ATTACH did) and the rows that arrived meanwhile
-- are moved too, so none can come in between the last move and the attach. COPYs into DEFAULT wait
-- for that second move and the attach's scan, as they waited for the attach before.
CREATE OR REPLACE FUNCTION pga_create_metric_partition(part_day date)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    part text := 'collector_metrics_p' || to_char(part_day, 'YYYYMMDD');
    lo timestamptz := part_day::timestamp AT TIME ZONE 'UTC';
    hi timestamptz := (part_day + 1)::timestamp AT TIME ZONE 'UTC';
    move text;
    n bigint := 0;
    m bigint;
BEGIN
    -- Serialise concurrent callers (every process at start; the writer on a schedule).
    PERFORM pg_advisory_xact_lock(7362100422);
    -- The parent's lock the ATTACH takes, taken before DEFAULT's below (the ATTACH's own order):
    -- taken after it, an ANALYZE of collector_metrics (the parent, then each partition) queued
    -- meanwhile deadlocked with this. It conflicts with no COPY or SELECT; and after it this session
    -- sees a partition another caller has just committed (the check below then skips it; without
    -- it, two callers at once failed with 42P07 "already exists").
    LOCK TABLE collector_metrics IN SHARE UPDATE EXCLUSIVE MODE;
    IF to_regclass(format('%I.%I', current_schema(), part)) IS NOT NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE format('CREATE TABLE %I (LIKE collector_metrics INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMPRESSION)', part);
    move := format(
        'WITH m AS (DELETE FROM collector_metrics_default WHERE received_at >= %L AND received_at < %L RETURNING *)
         INSERT INTO %I SELECT * FROM m', lo, hi, part);
    -- The bulk, with row locks only: COPYs into DEFAULT go on meanwhile. Again while a pass moved
    -- many rows (those COPYs committed during a long pass), at most 5 passes, so that what is left
    -- for the locked pass below is a few seconds of that day's ingest at most.
    FOR pass IN 1..5 LOOP
        EXIT WHEN NOT EXISTS (SELECT 1 FROM collector_metrics_default WHERE received_at >= lo AND received_at < hi);
        EXECUTE move;
        GET DIAGNOSTICS m = ROW_COUNT;
        n := n + m;
        EXIT WHEN m < 10000;
    END LOOP;
    -- The lock the ATTACH takes anyway, taken now: no COPY adds a row of this day after the next move.
    LOCK TABLE collector_metrics_default IN ACCESS EXCLUSIVE MODE;
    IF EXISTS (SELECT 1 FROM collector_metrics_default WHERE received_at >= lo AND received_at < hi) THEN
        EXECUTE move;
        GET DIAGNOSTICS m = ROW_COUNT;
        n := n + m;
    END IF;
    EXECUTE format('ALTER TABLE collector_metrics ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', part, lo, hi);
    RETURN n;
END;
$$;
