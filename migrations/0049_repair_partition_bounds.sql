-- 0049: daily partitions that an earlier pga_create_metric_partition bounded wrong get the bounds of
-- their UTC day, and their rows the partition of their UTC day.
--
-- Before 0048, a partition created in a session whose DateStyle was not ISO could be bounded off its
-- day (Asia/Kolkata's 'IST' read back as Israel's +02:00: collector_metrics_p20261227 FOR VALUES FROM
-- ('2026-12-27 03:30:00+00') TO ('2026-12-28 03:30:00+00')). 0048 bounds new partitions right, but
-- the old ones stayed: the first correctly bounded day after them failed to attach (42P17 "would
-- overlap partition") on every maintenance run — migrateDatabase rethrows it, so the admin service,
-- npm start and a writer with WRITER_MIGRATE exited at start once that day came within the days
-- created ahead — and the first hours of a day left outside its partition stayed in DEFAULT (its
-- partition's name existed, so no run created it).
--
-- pga_repair_metric_partition_bounds() finds every collector_metrics_pYYYYMMDD whose bound is not
-- exactly [YYYY-MM-DD 00:00 UTC, next day 00:00 UTC) and, when there is one:
--   1. takes ACCESS EXCLUSIVE on collector_metrics (after the partition steps' advisory lock);
--   2. detaches every such partition (all first: the right bounds of one may overlap another's wrong);
--   3. moves each one's rows of another UTC day out through collector_metrics (into the partition of
--      their day when it is attached, else DEFAULT);
--   4. moves DEFAULT's rows of its day in, and attaches it again FROM its day TO the next;
--   5. creates (pga_create_metric_partition) the partition of every day that rows moved out in step 3
--      had and that has none (the day after the last misbounded one), moving DEFAULT's rows in.
-- The partition keeps its table, indexes, constraints, owner and privileges (those
-- pga_create_metric_partition gave it); only its rows outside its day are rewritten. Rows are moved,
-- never copied: none is lost or duplicated. Correctly bounded partitions are not touched: on a
-- healthy installation it is one catalog query (ACCESS SHARE on each partition, as a SELECT takes;
-- no lock on collector_metrics). It returns each partition re-bounded ('rebounded') or created
-- ('created'). Idempotent; it runs under DateStyle ISO and TimeZone UTC of its own, whatever the
-- session's. A later CREATE OR REPLACE of this function must repeat its SET clauses.
--
-- Locks, on an affected installation: ACCESS EXCLUSIVE on collector_metrics and all its partitions
-- (every COPY and every query on the metrics waits) from step 1 until the transaction commits: for
-- as long as it takes to move the rows outside their day (the share of each misbounded partition its
-- shift covers: 3.5 h of 24 for the Kolkata case; partitions created ahead are still empty), to move
-- those days' DEFAULT rows, and to scan each re-bounded partition and DEFAULT once for the ATTACH's
-- validation — about the time it takes to insert the rows moved (measured: 7 days of 200,000 rows
-- each, 3.5 h off, 0.2 M rows moved: 10-18 s on a shared 2-core machine). This migration waits at
-- most the session's lock_timeout for that lock (2 s when none is set: the migration runner sets
-- none), so that a long query on the metrics does not queue every COPY behind it; without the lock
-- it warns and leaves the repair to partition maintenance (@pga/db maintainPartitions), which runs
-- it first on every run (at every start and on the writer's schedule) under its own lock_timeout,
-- and creates no day in a run whose repair timed out (so no start exits on 42P17 meanwhile).

CREATE FUNCTION pga_repair_metric_partition_bounds()
RETURNS TABLE (partition text, action text)
LANGUAGE plpgsql
SET DateStyle = 'ISO' SET TimeZone = 'UTC'
AS $$
DECLARE
    misbounded text[];
    part text;
    d date;
    lo timestamptz;
    hi timestamptz;
    other_days date[];
    moved_days date[] := '{}';
BEGIN
    -- Serialise with the other partition steps (before reading the bounds: DROP takes this lock
    -- before its locks on the table).
    PERFORM pg_advisory_xact_lock(7362100422);
    -- The daily partitions bounded other than their UTC day, compared as text (DateStyle ISO and
    -- TimeZone UTC, set on this function, make pg_get_expr's and format's texts the same).
    -- pg_get_expr with relation 0: a partition bound holds only constants, and with the partition's
    -- oid it would take ACCESS SHARE on each one, waiting behind any VACUUM FULL, CLUSTER, TRUNCATE
    -- or pg_repack swap of a single day (so would every maintenance run, at its lock_timeout).
    misbounded := ARRAY(
        SELECT c.relname::text
          FROM pg_inherits i
          JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = to_regclass(format('%I.%I', current_schema(), 'collector_metrics'))
           AND c.relname ~ '^collector_metrics_p[0-9]{8}$'
           AND pg_get_expr(c.relpartbound, 0) IS DISTINCT FROM format(
                   'FOR VALUES FROM (%L) TO (%L)',
                   to_date(right(c.relname, 8), 'YYYYMMDD')::timestamp AT TIME ZONE 'UTC',
                   (to_date(right(c.relname, 8), 'YYYYMMDD') + 1)::timestamp AT TIME ZONE 'UTC')
         ORDER BY 1);
    IF cardinality(misbounded) = 0 THEN
        RETURN;
    END IF;
    -- The lock DETACH takes, taken once for all (on every partition too).
    LOCK TABLE collector_metrics IN ACCESS EXCLUSIVE MODE;
    FOREACH part IN ARRAY misbounded LOOP
        EXECUTE format('ALTER TABLE collector_metrics DETACH PARTITION %I', part);
    END LOOP;
    -- Each one's rows of other days, out through the parent: into their day's partition when it is
    -- attached (bounded right), else DEFAULT (moved on below).
    FOREACH part IN ARRAY misbounded LOOP
        d := to_date(right(part, 8), 'YYYYMMDD');
        lo := d::timestamp AT TIME ZONE 'UTC';
        hi := (d + 1)::timestamp AT TIME ZONE 'UTC';
        EXECUTE format(
            'WITH m AS (DELETE FROM %I WHERE received_at < $1 OR received_at >= $2 RETURNING *),
                  i AS (INSERT INTO collector_metrics SELECT * FROM m)
             SELECT array_agg(DISTINCT (received_at AT TIME ZONE ''UTC'')::date) FROM m', part) INTO other_days USING lo, hi;
        moved_days := moved_days || coalesce(other_days, '{}');
    END LOOP;
    -- Each one with its day's rows waiting in DEFAULT (those its old bounds left out, those just moved
    -- out of its neighbour), attached again with the bounds of its day.
    FOREACH part IN ARRAY misbounded LOOP
        d := to_date(right(part, 8), 'YYYYMMDD');
        lo := d::timestamp AT TIME ZONE 'UTC';
        hi := (d + 1)::timestamp AT TIME ZONE 'UTC';
        EXECUTE format(
            'WITH m AS (DELETE FROM collector_metrics_default WHERE received_at >= $1 AND received_at < $2 RETURNING *)
             INSERT INTO %I SELECT * FROM m', part) USING lo, hi;
        EXECUTE format('ALTER TABLE collector_metrics ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', part, lo, hi);
        partition := part;
        action := 'rebounded';
        RETURN NEXT;
    END LOOP;
    -- The days rows were moved out to that have no partition (their rows are in DEFAULT now).
    FOR d IN SELECT DISTINCT x FROM unnest(moved_days) AS x ORDER BY 1 LOOP
        IF pga_create_metric_partition(d) IS NOT NULL THEN
            partition := 'collector_metrics_p' || to_char(d, 'YYYYMMDD');
            action := 'created';
            RETURN NEXT;
        END IF;
    END LOOP;
END;
$$;

DO $$
DECLARE
    r record;
BEGIN
    -- The migration runner sets no lock_timeout: without one, a long query on collector_metrics would
    -- keep this waiting, and every COPY queued behind it, for as long as it runs.
    IF current_setting('lock_timeout') IN ('0', '') THEN
        PERFORM set_config('lock_timeout', '2s', true);
    END IF;
    FOR r IN SELECT * FROM pga_repair_metric_partition_bounds() LOOP
        RAISE NOTICE 'partition %: %', r.partition, r.action;
    END LOOP;
EXCEPTION WHEN lock_not_available THEN
    RAISE WARNING 'daily partitions bounded off their UTC day (if any) are left for partition maintenance to repair: %', SQLERRM;
END;
$$;
