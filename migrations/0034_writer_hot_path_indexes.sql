-- 0034 (writer): less PostgreSQL work per committed push beyond the COPY itself.
--
-- Every push adds one ingest_ledger row and, per batch, one UPDATE of its collector's row. Measured
-- with services/writer/bench/writer-cost.ts (2 KB pushes, 1,000 collectors): the pipeline wrote
-- ~1,300 bytes of WAL per push on top of a bare COPY of the same rows (~3,800), and 40 % of the
-- collector updates were not HOT, i.e. each also inserted into all 9 indexes of collectors.
--
-- 1. ingest_ledger: three B-trees per push → one (the primary key, which the exactly-once check
--    needs).
--    * idx_ingest_ledger_collector (collector_id, received_at DESC) has no reader: nothing in the
--      product looks ledger entries up by collector (collector_metrics' own index answers "pushes of
--      a collector"). Dropped.
--    * idx_ingest_ledger_committed_at serves only the retention delete (`committed_at < now() - …`,
--      services/writer/src/maintenance.ts), once an hour. committed_at is the insert order, so a BRIN
--      finds the expired range as well and costs next to nothing per insert. Replaced.
DROP INDEX IF EXISTS idx_ingest_ledger_collector;
DROP INDEX IF EXISTS idx_ingest_ledger_committed_at;
CREATE INDEX idx_ingest_ledger_committed_at_brin ON ingest_ledger USING brin (committed_at);

-- 2. collectors: room on each page for HOT updates. The writer's per-batch state update changes no
--    indexed column (except status once, pending → active), so with free space on the page the new
--    row version stays on it and no index is touched. At the default fillfactor (100) the pages are
--    full and most updates had to go through every index. The table holds one row per collector
--    (thousands), so leaving half of each page free costs nothing worth counting. Takes effect for
--    pages written from now on (a VACUUM FULL in a maintenance window repacks existing ones).
ALTER TABLE collectors SET (fillfactor = 50);
