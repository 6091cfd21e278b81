-- 0012: dashboards assigned to a whole group ("auto_assign by group", issue 3 §4).
--
-- A row here means: every collector of the group gets this Grafana dashboard. The admin service
-- copies it onto the group's current collectors; the trigger below assigns it to collectors that
-- join the group later, including those that enroll themselves through the ingest edge (which is
-- why this is a trigger and not application code). Such assignments carry auto_assign = true.

CREATE TABLE group_dashboards (
    group_id uuid NOT NULL REFERENCES collector_groups(id) ON DELETE CASCADE,
    dashboard_id varchar(40) NOT NULL,
    dashboard_name varchar(255),
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT group_dashboards_pkey PRIMARY KEY (group_id, dashboard_id)
);

-- Inserts are handled per statement through a transition table, so a bulk import of 10,000
-- collectors runs one INSERT ... SELECT instead of 10,000 trigger calls; a group change is per row.
CREATE OR REPLACE FUNCTION pga_assign_group_dashboards_on_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO collector_dashboards (collector_id, dashboard_id, dashboard_name, auto_assign)
    SELECT n.id, gd.dashboard_id, gd.dashboard_name, true
      FROM new_collectors n
      JOIN group_dashboards gd ON gd.group_id = n.group_id
    ON CONFLICT (collector_id, dashboard_id) DO NOTHING;
    RETURN NULL;
END
$$;

CREATE TRIGGER collectors_assign_group_dashboards_insert
    AFTER INSERT ON collectors
    REFERENCING NEW TABLE AS new_collectors
    FOR EACH STATEMENT EXECUTE FUNCTION pga_assign_group_dashboards_on_insert();

CREATE OR REPLACE FUNCTION pga_assign_group_dashboards_on_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.group_id IS NOT NULL AND NEW.group_id IS DISTINCT FROM OLD.group_id THEN
        INSERT INTO collector_dashboards (collector_id, dashboard_id, dashboard_name, auto_assign)
        SELECT NEW.id, gd.dashboard_id, gd.dashboard_name, true
          FROM group_dashboards gd
         WHERE gd.group_id = NEW.group_id
        ON CONFLICT (collector_id, dashboard_id) DO NOTHING;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER collectors_assign_group_dashboards_update
    AFTER UPDATE OF group_id ON collectors
    FOR EACH ROW EXECUTE FUNCTION pga_assign_group_dashboards_on_update();
