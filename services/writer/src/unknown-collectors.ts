import { describeDatabase } from '@pga/db';
import type { Logger } from '@pga/logger';
import type { WriterMetrics } from './metrics';

/** After an error about pushes of unknown collectors, the next comes at most this much later. */
const SAY_EVERY_MS = 60_000;
/** Collector ids named in one line at the most. */
const NAMED = 20;

/**
 * Counts pushes stored for collectors this database has no row of (`writer_pushes_unknown_collector_total`)
 * and says so: at once, then at most once a minute with what came meanwhile (a writer on the wrong
 * database stores every push so), naming the database (server, database and user of `databaseUrl`)
 * and up to 20 collectors.
 */
export function createUnknownCollectorWatch({
  databaseUrl,
  logger,
  metrics,
}: {
  databaseUrl: string;
  logger: Logger;
  metrics: WriterMetrics;
}) {
  const database = (() => {
    try {
      return describeDatabase(databaseUrl);
    } catch {
      return undefined; // not a URL: the config refuses that at start
    }
  })();
  let saidAt = -Infinity;
  const since = { pushes: 0, collectorIds: new Set<string>() };
  return ({ pushes, collectorIds }: { pushes: number; collectorIds: string[] }): void => {
    if (pushes === 0) return;
    metrics.pushesUnknownCollector.inc(pushes);
    since.pushes += pushes;
    for (const id of collectorIds) if (since.collectorIds.size < NAMED) since.collectorIds.add(id);
    if (Date.now() - saidAt < SAY_EVERY_MS) return;
    saidAt = Date.now();
    logger.error(
      { pushes: since.pushes, collectors: [...since.collectorIds], database },
      'pushes stored for collectors this database has no row of: a wrong DATABASE_URL, or a database restored from a ' +
        'backup older than their registration? Their rows are stored here but no collector shows them ' +
        '(writer_pushes_unknown_collector_total counts them)',
    );
    since.pushes = 0;
    since.collectorIds.clear();
  };
}
