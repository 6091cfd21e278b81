import { Redis } from 'ioredis';
import type { Logger, OutageLog } from '@pga/logger';
import { LiveStatusEventSchema, type LiveStatusEvent } from './live-status-event';
import { createLiveHub, type LiveHub, type LiveLimits } from './live-hub';

export interface LiveFeed {
  /** The process's subscribers: `stream()` for each SSE subscriber. */
  readonly hub: LiveHub;
  /** Resolves once the Redis subscription is active (tests wait on it). */
  ready(): Promise<void>;
  /** Aborted by close(): subscriptions end, so a shutdown does not wait for SSE clients. */
  readonly closing: AbortSignal;
  close(): Promise<void>;
}

/**
 * One Redis subscriber per process, fanned out in memory to every SSE subscriber: 1,000 open
 * browser tabs cost one Redis connection, not 1,000. Each message is parsed and validated once here,
 * and the one (frozen) object goes to every subscriber (live-hub.ts). Malformed messages are dropped
 * and counted.
 */
export function createLiveFeed({
  redisUrl,
  channel,
  limits,
  logger,
  redisOutage,
}: {
  redisUrl: string;
  channel: string;
  limits: LiveLimits;
  logger: Logger;
  /** Where the subscriber's connection errors go (the process's other connections share it). */
  redisOutage: OutageLog;
}): LiveFeed {
  const hub = createLiveHub(limits);
  const subscriber = new Redis(redisUrl, { maxRetriesPerRequest: null });
  subscriber.on('error', (err) => redisOutage.error(err, 'live feed redis error'));
  let dropped = 0;
  subscriber.on('message', (_channel: string, message: string) => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(message);
    } catch {
      parsed = undefined;
    }
    const event = LiveStatusEventSchema.safeParse(parsed);
    if (!event.success) {
      if (++dropped % 100 === 1) logger.warn({ dropped }, 'malformed collector status messages dropped');
      return;
    }
    hub.publish(Object.freeze(event.data) satisfies LiveStatusEvent);
  });
  const closing = new AbortController();
  const subscribed = subscriber.subscribe(channel).then(() => undefined);
  subscribed.catch((err: unknown) => logger.warn({ err }, 'live feed could not subscribe'));
  return {
    hub,
    ready: () => subscribed,
    closing: closing.signal,
    async close() {
      if (closing.signal.aborted) return;
      closing.abort();
      subscriber.disconnect();
    },
  };
}
