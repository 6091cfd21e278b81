-- 0039: pending collector commands expire, and a deleted collector's are dropped.
--
-- `expires_at`: the admin service sets it (requested_at + COMMAND_TTL_SECONDS, default 24 h) and
-- puts the same instant into the Redis mailbox entry; the edge does not hand out an entry past it,
-- and the mailbox key itself expires with its newest command. A command with neither
-- `delivered_at` nor `dropped_at` is pending until `expires_at`, expired after.
-- `dropped_at` / `drop_reason`: taken out of the mailbox undelivered (`collector_deleted`).
-- A delivery the writer records later still wins (`delivered_at` is what happened).

ALTER TABLE collector_commands
    ADD COLUMN expires_at timestamptz,
    ADD COLUMN dropped_at timestamptz,
    ADD COLUMN drop_reason varchar(32);
UPDATE collector_commands SET expires_at = requested_at + interval '24 hours';
ALTER TABLE collector_commands
    ALTER COLUMN expires_at SET DEFAULT now() + interval '24 hours',
    ALTER COLUMN expires_at SET NOT NULL;
-- Pending commands of one collector (the per-collector cap, dropping on delete).
CREATE INDEX idx_collector_commands_open ON collector_commands (collector_id, expires_at)
    WHERE delivered_at IS NULL AND dropped_at IS NULL;
