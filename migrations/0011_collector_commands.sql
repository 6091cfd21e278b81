-- 0011: commands an admin sends to a collector (stop / restart / resume), CONTRACT.md heartbeat.
--
-- The admin service inserts the row and RPUSHes `{id, action}` onto the collector's Redis list
-- (redis-keys `commands(id)`); the edge hands it out in a heartbeat answer and records the delivery
-- time in the `deliveredCommands` hash; the writer copies that time into `delivered_at` in batches:
--   UPDATE collector_commands SET delivered_at = $2 WHERE id = $1 AND delivered_at IS NULL
-- The PostgreSQL row is the durable record (and what the UI shows); Redis is only the mailbox.

CREATE TABLE collector_commands (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    collector_id uuid NOT NULL REFERENCES collectors(id) ON DELETE CASCADE,
    action varchar(16) NOT NULL,
    requested_by uuid REFERENCES users(id) ON DELETE SET NULL,
    requested_at timestamptz NOT NULL DEFAULT now(),
    delivered_at timestamptz,
    CONSTRAINT collector_commands_valid_action CHECK (action IN ('stop', 'restart', 'resume'))
);
CREATE INDEX idx_collector_commands_collector ON collector_commands (collector_id, requested_at DESC);
CREATE INDEX idx_collector_commands_pending ON collector_commands (requested_at) WHERE delivered_at IS NULL;
