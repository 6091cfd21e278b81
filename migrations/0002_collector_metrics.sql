-- 0002: the partitioned metrics table, the ingest ledger, and partition maintenance.
--
-- Deliberate changes from the design document's collector_metrics:
--  * PARTITION BY RANGE (received_at), one partition per UTC day, created ahead by
--    pga_maintain_metric_partitions(), plus a DEFAULT partition so a row with an unexpected
--    timestamp can never abort a COPY batch. The primary key is (id, received_at) because a
--    partitioned table's unique constraints must include the partition key.
--  * one row per metric element of a push (CONTRACT.md): push_id, metric_type and database_name are
--    new columns; metric_data stays JSONB (numeric storage: 64-bit integers survive exactly);
--    checksum is the SHA-256 of the whole push body (shared by the push's rows).
--  * no foreign key to collectors: a FK is a per-row trigger on the COPY hot path, collectors are
--    only soft-deleted, and the edge admits a push only with a valid token of an existing collector.
--    Hard-deleting a collector therefore leaves its metrics until retention drops them.
--  * indexes serve "one collector, one metric type, a time range" (collector_id, metric_type,
--    received_at DESC) — its prefix also serves "one collector, a time range" — and a BRIN on
--    received_at replaces the design's B-tree (time order is insertion order; BRIN costs ~nothing
--    per row).

CREATE TABLE collector_metrics (
    id bigserial NOT NULL,
    collector_id uuid NOT NULL,
    push_id uuid NOT NULL,
    metric_type varchar(100) NOT NULL,
    database_name varchar(255),
    metric_data jsonb NOT NULL,
    received_at timestamptz NOT NULL,
    processed boolean NOT NULL DEFAULT false,
    processed_at timestamptz,
    record_count integer,
    checksum char(64),
    CONSTRAINT collector_metrics_pkey PRIMARY KEY (id, received_at)
) PARTITION BY RANGE (received_at);

CREATE INDEX idx_collector_metrics_collector_type_received
    ON collector_metrics (collector_id, metric_type, received_at DESC);
CREATE INDEX idx_collector_metrics_received_brin
    ON collector_metrics USING brin (received_at);

CREATE TABLE collector_metrics_default PARTITION OF collector_metrics DEFAULT;

-- The writer records every push id here in the same transaction as its COPY; a redelivered batch
-- finds its ids present and stores nothing twice. Rows older than the idempotency window are pruned.
CREATE TABLE ingest_ledger (
    push_id uuid PRIMARY KEY,
    collector_id uuid NOT NULL,
    received_at timestamptz NOT NULL,
    row_count integer NOT NULL,
    checksum char(64) NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_ingest_ledger_committed_at ON ingest_ledger (committed_at);
CREATE INDEX idx_ingest_ledger_collector ON ingest_ledger (collector_id, received_at DESC);

-- Creates the daily partitions from yesterday to `days_ahead` days ahead (UTC), plus one for every
-- day within retention that has rows waiting in the DEFAULT partition (those rows are moved into
-- it; rows dated beyond `days_ahead` stay in DEFAULT until their day comes into range), and drops
-- partitions whose whole day is older than `retention_days`. Returns what it did.
CREATE OR REPLACE FUNCTION pga_maintain_metric_partitions(days_ahead integer DEFAULT 7, retention_days integer DEFAULT 14)
RETURNS TABLE (created text[], dropped text[], moved bigint)
LANGUAGE plpgsql AS $$
DECLARE
    today date := (now() AT TIME ZONE 'UTC')::date;
    oldest_kept date := (now() AT TIME ZONE 'UTC')::date - retention_days;
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
    IF days_ahead < 0 OR retention_days < 1 THEN
        RAISE EXCEPTION 'days_ahead must be >= 0 and retention_days >= 1';
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
        SELECT EXISTS (SELECT 1 FROM collector_metrics_default WHERE received_at >= lo AND received_at < hi) INTO waiting;
        IF waiting THEN
            -- Rows for this day sit in DEFAULT: attaching a partition over them would fail, so build the
            -- partition as a plain table, move the rows, then attach it.
            EXECUTE format('CREATE TABLE %I (LIKE collector_metrics INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part);
            EXECUTE format(
                'WITH m AS (DELETE FROM collector_metrics_default WHERE received_at >= %L AND received_at < %L RETURNING *)
                 INSERT INTO %I SELECT * FROM m', lo, hi, part);
            GET DIAGNOSTICS n = ROW_COUNT;
            moved := moved + n;
            EXECUTE format('ALTER TABLE collector_metrics ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', part, lo, hi);
        ELSE
            EXECUTE format('CREATE TABLE %I PARTITION OF collector_metrics FOR VALUES FROM (%L) TO (%L)', part, lo, hi);
        END IF;
        created := created || part;
    END LOOP;

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
    RETURN NEXT;
END;
$$;

SELECT pga_maintain_metric_partitions(7, 14);
