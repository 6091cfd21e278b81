import type { Redis } from 'ioredis';
import type { Logger } from '@pga/logger';

/** What the collector-state statements return (sql.ts `RETURNING`). */
export interface StatusRow {
  id: string;
  status: string;
  old_status: string;
  last_heartbeat: Date | null;
  last_metric_at: Date | null;
  metrics_collected: string;
}

/** The live-status message (common.md "Live status") the admin service subscribes to. */
export interface CollectorStatusMessage {
  collector_id: string;
  status: string;
  last_heartbeat: string | null;
  last_metric_at: string | null;
  metrics_collected: number;
}

export function toStatusMessage(row: StatusRow): CollectorStatusMessage {
  return {
    collector_id: row.id,
    status: row.status,
    last_heartbeat: row.last_heartbeat ? new Date(row.last_heartbeat).toISOString() : null,
    last_metric_at: row.last_metric_at ? new Date(row.last_metric_at).toISOString() : null,
    metrics_collected: Number(row.metrics_collected),
  };
}

/**
 * Publishes status changes AFTER the transaction that made them committed (a subscriber that reads
 * PostgreSQL on a message must see the change). Pub/sub is best-effort: a failure is logged, never
 * retried, because the next batch/heartbeat/sweep publishes the collector's state again.
 */
export function createStatusPublisher(redis: Redis, channel: string, logger: Logger) {
  return async (rows: StatusRow[]): Promise<void> => {
    if (rows.length === 0) return;
    const pipe = redis.pipeline();
    for (const row of rows) pipe.publish(channel, JSON.stringify(toStatusMessage(row)));
    try {
      await pipe.exec();
    } catch (err) {
      logger.warn({ err, collectors: rows.length }, 'could not publish collector status');
    }
  };
}

export type PublishStatuses = ReturnType<typeof createStatusPublisher>;
