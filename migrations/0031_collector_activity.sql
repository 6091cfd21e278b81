-- 0031 (writer): heartbeat history (for uptime) and command-delivery records.
--
-- collector_heartbeats keeps one row per collector and UTC minute in which the writer flushed a
-- heartbeat for it (the edge keeps only the latest heartbeat in Redis). Together with the minutes of
-- collector_metrics_rollup (minutes with pushes) it is the activity history from which
-- collectors.uptime_percentage is computed over a rolling window (services/writer/README.md "Uptime").
-- A minute grain bounds the table at 1,440 rows per collector per day whatever the heartbeat rate.
CREATE TABLE collector_heartbeats (
    collector_id uuid NOT NULL,
    minute timestamptz NOT NULL,
    status varchar(16) NOT NULL,
    CONSTRAINT collector_heartbeats_pkey PRIMARY KEY (collector_id, minute)
);
CREATE INDEX idx_collector_heartbeats_minute ON collector_heartbeats (minute);

-- The edge records `HSET <commands:delivered> <command id> <iso time>` when a heartbeat answer carried
-- a command; the writer moves those into PostgreSQL in batches. The admin service owns its commands
-- table; this one is keyed by the command id as text so it works whatever type the admin chose.
CREATE TABLE collector_command_deliveries (
    command_id text PRIMARY KEY,
    delivered_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

-- Records deliveries and, when the admin service's `collector_commands` table exists with a
-- `delivered_at` column, stamps it too (looked up at call time: the admin migrations are another
-- engineer's, and the writer must not fail if they differ). Returns the number of new deliveries.
CREATE OR REPLACE FUNCTION pga_record_command_deliveries(ids text[], delivered timestamptz[])
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    INSERT INTO collector_command_deliveries (command_id, delivered_at)
    SELECT i, d FROM unnest(ids, delivered) AS u(i, d)
    ON CONFLICT (command_id) DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF EXISTS (
        SELECT 1 FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = 'collector_commands' AND column_name = 'delivered_at'
    ) THEN
        EXECUTE 'UPDATE collector_commands c SET delivered_at = u.d
                   FROM unnest($1, $2) AS u(i, d)
                  WHERE c.id::text = u.i AND c.delivered_at IS NULL'
          USING ids, delivered;
    END IF;
    RETURN n;
END;
$$;
