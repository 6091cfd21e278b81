-- 0042: the days that need a partition, whatever the session's time zone.
--
-- pga_metric_partition_days_to_create (0037) listed yesterday to `days_ahead` days ahead with
-- generate_series(date, date, interval '1 day'), which runs over timestamptz in the session's time
-- zone: where a daylight-saving change skips midnight (America/Santiago, 2026-09-06), the series
-- stepped onto 01:00 and passed its last day, which was left out — with PARTITION_DAYS_AHEAD=1 the
-- next day's partition was not created ahead, and its rows went to DEFAULT until the next run. The
-- services' sessions use the server's TimeZone setting (UTC by default on RDS, unless a parameter
-- group, the database or the role sets another), as does psql. The days are now date + integer.
-- Nothing else changes.
CREATE OR REPLACE FUNCTION pga_metric_partition_days_to_create(days_ahead integer DEFAULT 7, retention_days integer DEFAULT NULL)
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
        SELECT today + i AS d FROM generate_series(-1, days_ahead) AS i
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
