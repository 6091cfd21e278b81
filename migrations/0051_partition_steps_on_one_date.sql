-- 0051: the partition steps can be given the UTC date their run is for.
--
-- The writer's partitions job runs maintainPartitions and then its retention, each statement in a
-- transaction of its own, and each of the steps of 0037 (and the retention's deletes) read today's
-- UTC date from its own now(). A run that straddled midnight UTC therefore dropped the partitions
-- past the retention by one date and cut rollups, the ledger, heartbeat history and push minutes by
-- the next: the oldest partition kept lost the rollups, ledger entries and uptime minutes of its own
-- rows until the next run (an hour later). The writer now reads the date once per run and passes it
-- to every step; these overloads take it (`today`, NULL: PostgreSQL's UTC date, as before). The
-- signatures of 0037 stay for psql and for writers of before, and now call these with NULL.
--
-- A date later than PostgreSQL's own would drop days still within the retention: refused. An earlier
-- one (a run that began before midnight) keeps a day more, until the next run.

CREATE FUNCTION pga_partition_run_date(today date)
RETURNS date
LANGUAGE plpgsql AS $$
DECLARE
    current_day date := (now() AT TIME ZONE 'UTC')::date;
BEGIN
    IF today IS NULL THEN
        RETURN current_day;
    END IF;
    IF today > current_day THEN
        RAISE EXCEPTION 'the date % is after today (%, UTC): a run cannot be for a day not begun', today, current_day;
    END IF;
    RETURN today;
END;
$$;

CREATE FUNCTION pga_metric_partition_days_to_create(days_ahead integer, retention_days integer, today date)
RETURNS SETOF date
LANGUAGE plpgsql AS $$
DECLARE
    run_day date := pga_partition_run_date(today);
    oldest_kept date := run_day - coalesce(retention_days, 1);
BEGIN
    IF days_ahead < 0 OR retention_days < 1 THEN
        RAISE EXCEPTION 'days_ahead must be >= 0 and retention_days >= 1 (or NULL: drop nothing)';
    END IF;
    RETURN QUERY
    SELECT d FROM (
        SELECT run_day + i AS d FROM generate_series(-1, days_ahead) AS i
        UNION
        SELECT DISTINCT (m.received_at AT TIME ZONE 'UTC')::date
          FROM collector_metrics_default m
         WHERE m.received_at >= (oldest_kept::timestamp AT TIME ZONE 'UTC')
           AND m.received_at < ((run_day + days_ahead + 1)::timestamp AT TIME ZONE 'UTC')
    ) days
    WHERE to_regclass(format('%I.%I', current_schema(), 'collector_metrics_p' || to_char(d, 'YYYYMMDD'))) IS NULL
    ORDER BY d;
END;
$$;

CREATE FUNCTION pga_expired_metric_partitions(retention_days integer, today date)
RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    run_day date := pga_partition_run_date(today);
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
       AND to_date(substring(c.relname FROM '[0-9]{8}$'), 'YYYYMMDD') < run_day - retention_days
     ORDER BY c.relname;
END;
$$;

CREATE FUNCTION pga_drop_metric_partition(part text, retention_days integer, today date)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    run_day date := pga_partition_run_date(today);
    rel regclass;
    holders text;
BEGIN
    IF retention_days IS NULL OR retention_days < 1 THEN
        RAISE EXCEPTION 'retention_days must be >= 1';
    END IF;
    IF part !~ '^collector_metrics_p[0-9]{8}$' THEN
        RAISE EXCEPTION '% is not a daily collector_metrics partition', part;
    END IF;
    IF to_date(substring(part FROM '[0-9]{8}$'), 'YYYYMMDD') >= run_day - retention_days THEN
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

CREATE FUNCTION pga_expire_metric_default_rows(retention_days integer, today date)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    run_day date := pga_partition_run_date(today);
    n bigint;
BEGIN
    IF retention_days IS NULL OR retention_days < 1 THEN
        RAISE EXCEPTION 'retention_days must be >= 1';
    END IF;
    DELETE FROM collector_metrics_default
     WHERE received_at < ((run_day - retention_days)::timestamp AT TIME ZONE 'UTC');
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END;
$$;

-- The signatures of 0037: the same steps, on PostgreSQL's date.
CREATE OR REPLACE FUNCTION pga_metric_partition_days_to_create(days_ahead integer DEFAULT 7, retention_days integer DEFAULT NULL)
RETURNS SETOF date
LANGUAGE sql AS $$ SELECT * FROM pga_metric_partition_days_to_create(days_ahead, retention_days, NULL::date) $$;

CREATE OR REPLACE FUNCTION pga_expired_metric_partitions(retention_days integer)
RETURNS SETOF text
LANGUAGE sql AS $$ SELECT * FROM pga_expired_metric_partitions(retention_days, NULL::date) $$;

CREATE OR REPLACE FUNCTION pga_drop_metric_partition(part text, retention_days integer)
RETURNS text
LANGUAGE sql AS $$ SELECT pga_drop_metric_partition(part, retention_days, NULL::date) $$;

CREATE OR REPLACE FUNCTION pga_expire_metric_default_rows(retention_days integer)
RETURNS bigint
LANGUAGE sql AS $$ SELECT pga_expire_metric_default_rows(retention_days, NULL::date) $$;
