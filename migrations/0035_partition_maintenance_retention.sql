-- 0035: partition maintenance that is told no retention drops nothing; DEFAULT rows expire too.
--
-- Until now every service start (migrateDatabase → pga_maintain_metric_partitions(7, 14)) dropped the
-- partitions older than 14 days, whatever METRICS_RETENTION_DAYS the writer was given: with a 30-day
-- retention, days 15 – 30 were lost at each restart. Only the writer knows the retention setting, so
-- only its scheduled job passes one; a call without it (retention_days NULL, the new default) creates
-- partitions and moves DEFAULT rows around today, and drops nothing.
--
-- New partitions are created as plain tables and attached (SHARE UPDATE EXCLUSIVE on collector_metrics)
-- instead of CREATE TABLE … PARTITION OF (ACCESS EXCLUSIVE): creating the partitions ahead no longer
-- waits for, or holds up, the COPYs in flight. Dropping an expired partition still takes ACCESS
-- EXCLUSIVE (DETACH … CONCURRENTLY is not allowed next to a DEFAULT partition); it is bounded by the
-- caller's lock_timeout and happens once a day.
--
-- Rows in the DEFAULT partition older than the retention were never removed: a dead letter retried
-- after its day's partition was dropped, or a writer backlog older than the retention, left rows there
-- for good (and every later CREATE … PARTITION OF scans DEFAULT). They are now deleted with the
-- partitions (the new `expired` column counts them).
DROP FUNCTION pga_maintain_metric_partitions(integer, integer);

CREATE FUNCTION pga_maintain_metric_partitions(days_ahead integer DEFAULT 7, retention_days integer DEFAULT NULL)
RETURNS TABLE (created text[], dropped text[], moved bigint, expired bigint)
LANGUAGE plpgsql AS $$
DECLARE
    today date := (now() AT TIME ZONE 'UTC')::date;
    -- Without a retention: only the days around today are looked at, and nothing is dropped.
    oldest_kept date := (now() AT TIME ZONE 'UTC')::date - coalesce(retention_days, 1);
    d date;
    lo timestamptz;
    hi timestamptz;
    part text;
    n bigint;
    waiting boolean;
    rec record;
BEGIN
    created := '{}';
    dropped := '{}';
    moved := 0;
    expired := 0;
    IF days_ahead < 0 OR retention_days < 1 THEN
        RAISE EXCEPTION 'days_ahead must be >= 0 and retention_days >= 1 (or NULL: drop nothing)';
    END IF;
    -- Serialise concurrent callers (each process calls this at start; the writer on a schedule).
    PERFORM pg_advisory_xact_lock(7362100422);

    FOR d IN
        SELECT gs::date FROM generate_series(today - 1, today + days_ahead, interval '1 day') AS gs
        UNION
        SELECT DISTINCT (m.received_at AT TIME ZONE 'UTC')::date
          FROM collector_metrics_default m
         WHERE m.received_at >= (oldest_kept::timestamp AT TIME ZONE 'UTC')
           AND m.received_at < ((today + days_ahead + 1)::timestamp AT TIME ZONE 'UTC')
        ORDER BY 1
    LOOP
        part := 'collector_metrics_p' || to_char(d, 'YYYYMMDD');
        CONTINUE WHEN to_regclass(format('%I.%I', current_schema(), part)) IS NOT NULL;
        lo := d::timestamp AT TIME ZONE 'UTC';
        hi := (d + 1)::timestamp AT TIME ZONE 'UTC';
        -- Built as a plain table and then attached: CREATE TABLE … PARTITION OF takes an ACCESS
        -- EXCLUSIVE lock on collector_metrics, so it waited for (and then held up) every open COPY;
        -- ATTACH PARTITION takes SHARE UPDATE EXCLUSIVE, which COPY and SELECT do not conflict with
        -- (measured with psql: behind an open INSERT the first gave up at lock_timeout, the second
        -- went through). Rows of this day waiting in DEFAULT are moved in before the attach.
        EXECUTE format('CREATE TABLE %I (LIKE collector_metrics INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMPRESSION)', part);
        SELECT EXISTS (SELECT 1 FROM collector_metrics_default WHERE received_at >= lo AND received_at < hi) INTO waiting;
        IF waiting THEN
            EXECUTE format(
                'WITH m AS (DELETE FROM collector_metrics_default WHERE received_at >= %L AND received_at < %L RETURNING *)
                 INSERT INTO %I SELECT * FROM m', lo, hi, part);
            GET DIAGNOSTICS n = ROW_COUNT;
            moved := moved + n;
        END IF;
        EXECUTE format('ALTER TABLE collector_metrics ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', part, lo, hi);
        created := created || part;
    END LOOP;

    IF retention_days IS NOT NULL THEN
        FOR rec IN
            SELECT c.relname
              FROM pg_inherits i
              JOIN pg_class c ON c.oid = i.inhrelid
              JOIN pg_class p ON p.oid = i.inhparent
              JOIN pg_namespace ns ON ns.oid = p.relnamespace
             WHERE p.relname = 'collector_metrics' AND ns.nspname = current_schema()
               AND c.relname ~ '^collector_metrics_p[0-9]{8}$'
             ORDER BY c.relname
        LOOP
            d := to_date(substring(rec.relname FROM '[0-9]{8}$'), 'YYYYMMDD');
            IF d < oldest_kept THEN
                EXECUTE format('DROP TABLE %I', rec.relname);
                dropped := dropped || rec.relname::text;
            END IF;
        END LOOP;
        -- Row locks only: ingest never writes rows this old, so nothing waits on this.
        DELETE FROM collector_metrics_default WHERE received_at < (oldest_kept::timestamp AT TIME ZONE 'UTC');
        GET DIAGNOSTICS expired = ROW_COUNT;
    END IF;
    RETURN NEXT;
END;
$$;
