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
 * The collectors' committed state now, for held counter updates: with several writers, another one
 * may have changed a collector's status since this one's row was returned (a heartbeat flush saying
 * `error` on writer Y while writer X holds a batch's row saying `active`), and X's late message then
 * undid Y's in every live view until the next change — 7 of 10 trials with two writers.
 */
export const CURRENT_STATUSES = `SELECT id, status, status AS old_status, last_heartbeat, last_metric_at, metrics_collected
  FROM collectors WHERE id = ANY($1::uuid[])`;

/**
 * Publishes collector state AFTER the transaction that changed it committed (a subscriber that reads
 * PostgreSQL on a message must see the change). Pub/sub is best-effort: a failure is logged, never
 * retried, because the next batch/heartbeat/sweep publishes the collector's state again.
 *
 * A status change (`old_status` → `status`) goes out at once. A row whose status did not change only
 * moved counters (metrics_collected, last_metric_at, last_heartbeat): those are held and published
 * at most once per `counterIntervalMs` per collector, the newest row winning. Every committed batch
 * returns a row for each of its collectors, so under load the writer published one message per
 * collector per batch, each also parsed by every admin service; a live view needs the latest
 * counters about once a second, not each step. When they go out, `current` (CURRENT_STATUSES) reads
 * what is committed now, so a held message never carries a status another writer has changed since;
 * if it fails (PostgreSQL away), they are dropped — nothing changes during an outage, and the next
 * commit publishes again.
 */
export function createStatusPublisher(
  redis: Redis,
  channel: string,
  logger: Logger,
  {
    counterIntervalMs = 1000,
    onSent,
    current,
  }: {
    counterIntervalMs?: number;
    onSent?: (messages: number) => void;
    /** Reads the collectors' committed state (CURRENT_STATUSES); without it, held rows go out as they are. */
    current?: (ids: string[]) => Promise<StatusRow[]>;
  } = {},
) {
  const held = new Map<string, StatusRow>();
  let timer: NodeJS.Timeout | null = null;

  const send = async (rows: StatusRow[]): Promise<number> => {
    if (rows.length === 0) return 0;
    const pipe = redis.pipeline();
    for (const row of rows) pipe.publish(channel, JSON.stringify(toStatusMessage(row)));
    try {
      await pipe.exec();
      onSent?.(rows.length);
      return rows.length;
    } catch (err) {
      logger.warn({ err, collectors: rows.length }, 'could not publish collector status');
      return 0;
    }
  };

  /** Publishes the held counter updates now (the timer; and stop, before Redis closes). */
  const flush = async (): Promise<number> => {
    if (timer) clearTimeout(timer);
    timer = null;
    let rows = [...held.values()];
    held.clear();
    if (current && rows.length > 0) {
      try {
        rows = await current(rows.map((r) => r.id));
      } catch (err) {
        logger.debug({ err, collectors: rows.length }, 'collector counters not published: their state could not be read');
        return 0;
      }
    }
    return send(rows);
  };

  /** Publishes status changes now and holds counter-only updates; resolves with the messages sent. */
  const publish = async (rows: StatusRow[]): Promise<number> => {
    const now: StatusRow[] = [];
    for (const row of rows) {
      // A newer row replaces what is held for its collector (it carries the newer counters too).
      held.delete(row.id);
      if (row.status !== row.old_status) now.push(row);
      else held.set(row.id, row);
    }
    if (held.size > 0 && !timer) timer = setTimeout(() => void flush(), counterIntervalMs);
    return send(now);
  };

  return { publish, flush };
}

export type PublishStatuses = ReturnType<typeof createStatusPublisher>['publish'];
