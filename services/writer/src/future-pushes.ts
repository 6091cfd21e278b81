import type { Logger } from '@pga/logger';
import type { PreparedPush } from './prepare-push';
import type { WriterMetrics } from './metrics';

/** After a warning about pushes received in the future, the next comes at most this much later. */
const WARN_EVERY_MS = 60_000;

const DAY_MS = 86_400_000;

/**
 * Counts stored pushes whose `received_at` (the accepting edge's clock) is past the last daily
 * partition maintenance keeps ahead: the end of the UTC day `daysAhead` (PARTITION_DAYS_AHEAD) days
 * after today on this writer's clock (pga_metric_partition_days_to_create): their rows sit in
 * collector_metrics' DEFAULT partition, and they read as the collector's latest metrics
 * until then. An edge whose clock runs far ahead does it to every push: one warning, then one a
 * minute at most with the count since the last (not a line per batch).
 */
export function createFuturePushWatch({
  daysAhead,
  logger,
  metrics,
}: {
  daysAhead: number;
  logger: Logger;
  metrics: WriterMetrics;
}) {
  let unsaid = 0;
  let saidAt = -Infinity;
  let latest = '';
  return (pushes: readonly PreparedPush[], storedIds: readonly string[]): void => {
    const limit = (Math.floor(Date.now() / DAY_MS) + daysAhead + 1) * DAY_MS;
    // The usual batch has none: nothing is allocated for it.
    if (!pushes.some((p) => p.receivedAt.getTime() > limit)) return;
    const stored = new Set(storedIds);
    const ahead = pushes.filter((p) => p.receivedAt.getTime() > limit && stored.has(p.pushId));
    if (ahead.length === 0) return;
    metrics.pushesFuture.inc(ahead.length);
    unsaid += ahead.length;
    for (const p of ahead) if (p.receivedIso > latest) latest = p.receivedIso;
    if (Date.now() - saidAt < WARN_EVERY_MS) return;
    logger.warn(
      { pushes: unsaid, latestReceivedAt: latest, collectorId: ahead[0]!.collectorId, daysAhead },
      'pushes received past the last partition made ahead, PARTITION_DAYS_AHEAD days after today (an edge clock running ahead?): stored in the DEFAULT partition',
    );
    saidAt = Date.now();
    unsaid = 0;
    latest = '';
  };
}
