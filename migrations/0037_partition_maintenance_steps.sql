-- 0037: partition maintenance in steps, each committed on its own.
--
-- pga_maintain_metric_partitions (0035) did everything in one transaction: one lock timeout (55P03) —
-- a long query on an expired partition or on the DEFAULT partition during the daily DROP / ATTACH —
-- rolled back the partitions created ahead and the DEFAULT rows moved in that run, and every retry
-- queued its ACCESS EXCLUSIVE lock in front of the COPYs again. The work is now split into functions
-- that `maintainPartitions` (@pga/db) calls one per transaction:
--   pga_metric_partition_days_to_create(days_ahead, retention_days)  days whose partition is missing
--   pga_create_metric_partition(day)                                 creates one, moves its DEFAULT rows in
--   pga_expired_metric_partitions(retention_days)                    partitions past the retention
--   pga_drop_metric_partition(name, retention_days)                  drops one (skips it if in use)
--   pga_expire_metric_default_rows(retention_days)                   deletes DEFAULT rows past the retention
-- pga_maintain_metric_partitions keeps its signature and result for psql, now composed of the same
-- steps (in the caller's one transaction); the one difference: an expired partition another session
-- holds a lock on is left for the next run instead of waited for.

-- Days that need a partition: yesterday to `days_ahead` days ahead (UTC), plus every day within the
-- retention (without one: from yesterday) that has rows waiting in the DEFAULT partition. Oldest first.
CREATE FUNCTION pga_metric_partition_days_to_create(days_ahead integer DEFAULT 7, retention_days integer DEFAULT NULL)
RETURNS SETOF date
LANGUAGE plpgsql AS $$
DECLARE
    today date := (now() AT TIME ZONE 'UTC')::date;
    oldest_kept date := (now() AT TIME ZONE 'UTC')::date - coalesce(retention_days, 1);
BEGIN
    IF days_ahead < 0 OR retention_days < 1 THEN
        RAISE EXCEPTION 'days_ahead must be >= 0 and retention_days >= 1 (or NULL: drop nothing)';
    END IF;
    RETURN QUERY
    SELECT d FROM (
        SELECT gs::date AS d FROM generate_series(today - 1, today + days_ahead, interval '1 day') AS gs
        UNION
        SELECT DISTINCT (m.received_at AT TIME ZONE 'UTC')::date
          FROM collector_metrics_default m
         WHERE m.received_at >= (oldest_kept::timestamp AT TIME ZONE 'UTC')
           AND m.received_at < ((today + days_ahead + 1)::timestamp AT TIME ZONE 'UTC')
    ) days
    WHERE to_regclass(format('%I.%I', current_schema(), 'collector_metrics_p' || to_char(d, 'YYYYMMDD'))) IS NULL
    ORDER BY d;
END;
$$;

-- Creates the partition of one UTC day unless it exists: a plain table, the day's rows waiting in
-- DEFAULT moved in, then attached (SHARE UPDATE EXCLUSIVE on collector_metrics, which COPY and SELECT
-- do not conflict with; ACCESS EXCLUSIVE on the DEFAULT partition, which it scans). Returns the rows
-- moved, or NULL when the partition existed already.
CREATE FUNCTION pga_create_metric_partition(part_day date)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    part text := 'collector_metrics_p' || to_char(part_day, 'YYYYMMDD');
    lo timestamptz := part_day::timestamp AT TIME ZONE 'UTC';
    hi timestamptz := (part_day + 1)::timestamp AT TIME ZONE 'UTC';
    n bigint := 0;
BEGIN
    -- Serialise concurrent callers (every process at start; the writer on a schedule).
    PERFORM pg_advisory_xact_lock(7362100422);
    IF to_regclass(format('%I.%I', current_schema(), part)) IS NOT NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE format('CREATE TABLE %I (LIKE collector_metrics INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMPRESSION)', part);
    IF EXISTS (SELECT 1 FROM collector_metrics_default WHERE received_at >= lo AND received_at < hi) THEN
        EXECUTE format(
            'WITH m AS (DELETE FROM collector_metrics_default WHERE received_at >= %L AND received_at < %L RETURNING *)
             INSERT INTO %I SELECT * FROM m', lo, hi, part);
        GET DIAGNOSTICS n = ROW_COUNT;
    END IF;
    EXECUTE format('ALTER TABLE collector_metrics ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', part, lo, hi);
    RETURN n;
END;
$$;

-- The daily partitions whose whole day is older than `retention_days`, oldest first.
CREATE FUNCTION pga_expired_metric_partitions(retention_days integer)
RETURNS SETOF text
LANGUAGE plpgsql AS $$
BEGIN
    IF retention_days IS NULL OR retention_days < 1 THEN
        RAISE EXCEPTION 'retention_days must be >= 1';
    END IF;
    RETURN QUERY
    SELECT c.relname::text
      FROM pg_inherits i
      JOIN pg_class c ON c.oid = i.inhrelid
      JOIN pg_class p ON p.oid = i.inhparent
      JOIN pg_namespace ns ON ns.oid = p.relnamespace
     WHERE p.relname = 'collector_metrics' AND ns.nspname = current_schema()
       AND c.relname ~ '^collector_metrics_p[0-9]{8}$'
       AND to_date(substring(c.relname FROM '[0-9]{8}$'), 'YYYYMMDD') < (now() AT TIME ZONE 'UTC')::date - retention_days
     ORDER BY c.relname;
END;
$$;

-- Drops one expired daily partition. Returns 'dropped'; 'absent' when it is no longer there (another
-- run dropped it); or 'in use by pid …' when another session holds or awaits a lock on it (a long
-- query): DROP would take ACCESS EXCLUSIVE on collector_metrics first and then wait for that session
-- — holding up every COPY meanwhile — so it is left for the next run without waiting. DROP still
-- waits (up to the caller's lock_timeout) for collector_metrics itself. Refuses a partition that is
-- not past the retention.
CREATE FUNCTION pga_drop_metric_partition(part text, retention_days integer)
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

-- Deletes DEFAULT-partition rows older than the retention (row locks only: ingest never writes rows
-- this old, so nothing waits on this). Returns how many.
CREATE FUNCTION pga_expire_metric_default_rows(retention_days integer)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    IF retention_days IS NULL OR retention_days < 1 THEN
        RAISE EXCEPTION 'retention_days must be >= 1';
    END IF;
    DELETE FROM collector_metrics_default
     WHERE received_at < (((now() AT TIME ZONE 'UTC')::date - retention_days)::timestamp AT TIME ZONE 'UTC');
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END;
$$;

-- The all-in-one function for psql, as before (one transaction, the caller's), built from the steps.
CREATE OR REPLACE FUNCTION pga_maintain_metric_partitions(days_ahead integer DEFAULT 7, retention_days integer DEFAULT NULL)
RETURNS TABLE (created text[], dropped text[], moved bigint, expired bigint)
LANGUAGE plpgsql AS $$
DECLARE
    d date;
    n bigint;
    part text;
BEGIN
    created := '{}';
    dropped := '{}';
    moved := 0;
    expired := 0;
    IF days_ahead < 0 OR retention_days < 1 THEN
        RAISE EXCEPTION 'days_ahead must be >= 0 and retention_days >= 1 (or NULL: drop nothing)';
    END IF;
    PERFORM pg_advisory_xact_lock(7362100422);
    FOR d IN SELECT * FROM pga_metric_partition_days_to_create(days_ahead, retention_days) LOOP
        n := pga_create_metric_partition(d);
        CONTINUE WHEN n IS NULL;
        created := created || ('collector_metrics_p' || to_char(d, 'YYYYMMDD'));
        moved := moved + n;
    END LOOP;
    IF retention_days IS NOT NULL THEN
        FOR part IN SELECT * FROM pga_expired_metric_partitions(retention_days) LOOP
            IF pga_drop_metric_partition(part, retention_days) = 'dropped' THEN
                dropped := dropped || part;
            END IF;
        END LOOP;
        expired := pga_expire_metric_default_rows(retention_days);
    END IF;
    RETURN NEXT;
END;
$$;
