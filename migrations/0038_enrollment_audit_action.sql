-- 0038: an enrolled collector's audit row has the action every other registration has.
--
-- The edge wrote enrollments as `registered`, outside the `<entity>.<verb>` vocabulary of every other
-- row: `audit.list {action: "collector."}` (a prefix filter) and a filter on `collector.registered`
-- both missed collectors that enrolled themselves. They are `collector.registered` now, told apart by
-- `details.via = "enrollment"` (and actor `enrollment`), as before.
UPDATE collector_audit_log
   SET action = 'collector.registered'
 WHERE action = 'registered' AND details->>'via' = 'enrollment';
