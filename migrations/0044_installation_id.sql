-- 0044: the installation's identity, a random id created once with the database.
--
-- The admin service copies it into Redis (`<prefix>:installation`) when Redis holds none, and its
-- repair of the known-collectors set (services/admin-api/src/collectors/installation.ts) refuses
-- as deleted the collectors Redis knows and PostgreSQL lacks only while the two ids are the same:
-- a backup of this database (pg_dump, pg_basebackup, a snapshot) keeps the id, while a wrong
-- DATABASE_URL, another installation on the same REDIS_KEY_PREFIX or a database re-created from
-- nothing has another one, and must not have the whole fleet refused. One row, never updated by
-- the services (`npm run adopt-installation` copies it into Redis when the operator decides so).
CREATE TABLE installation (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    id         uuid NOT NULL DEFAULT gen_random_uuid(),
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO installation DEFAULT VALUES;
