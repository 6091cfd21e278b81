import { Redis } from 'ioredis';
import { z } from 'zod';
import type { Logger, OutageLog } from '@pga/logger';
import { LiveStatusEventSchema, type LiveStatusEvent } from './live-status-event';
import { createLiveHub, sessionEnded, type LiveHub, type LiveLimits } from './live-hub';

export interface LiveFeed {
  /** The process's subscribers: `stream()` for each SSE subscriber. */
  readonly hub: LiveHub;
  /** Resolves once the Redis subscription is active (tests wait on it). */
  ready(): Promise<void>;
  /** Aborted by close(): subscriptions end, so a shutdown does not wait for SSE clients. */
  readonly closing: AbortSignal;
  close(): Promise<void>;
}

/** A message on the sessions-ended channel: whose live feeds every admin process ends. */
export const SessionsEndedSchema = z.union([
  z.object({ user_id: z.uuid() }).strict(),
  z.object({ session_hash: z.string().regex(/^[0-9a-f]{64}$/) }).strict(),
]);
export type SessionsEnded = z.infer<typeof SessionsEndedSchema>;

/**
 * One Redis subscriber per process, fanned out in memory to every SSE subscriber: 1,000 open
 * browser tabs cost one Redis connection, not 1,000. Each message is parsed and validated once here,
 * and the one (frozen) object goes to every subscriber (live-hub.ts). Malformed messages are dropped
 * and counted.
 *
 * The same connection listens on `sessionsChannel`: a logout, or a user's sessions deleted
 * (disable, re-role, password reset), in any admin process ends the feeds this one serves for them
 * at once. And every `sessionCheckMs` the sessions of the open feeds are read again (one query), so
 * a session deleted while Redis was away, or by hand, ends its feeds within that time; a feed also
 * ends at its session's expiry (live-hub.ts).
 */
export function createLiveFeed({
  redisUrl,
  channel,
  sessionsChannel,
  limits,
  checkSessions,
  sessionCheckMs,
  logger,
  redisOutage,
}: {
  redisUrl: string;
  channel: string;
  sessionsChannel: string;
  limits: LiveLimits;
  /** Which of these session hashes are still valid. */
  checkSessions: (hashes: string[]) => Promise<ReadonlySet<string>>;
  sessionCheckMs: number;
  logger: Logger;
  /** Where the subscriber's connection errors go (the process's other connections share it). */
  redisOutage: OutageLog;
}): LiveFeed {
  const hub = createLiveHub(limits);
  const subscriber = new Redis(redisUrl, { maxRetriesPerRequest: null });
  subscriber.on('error', (err) => redisOutage.error(err, 'live feed redis error'));
  let dropped = 0;
  subscriber.on('message', (from: string, message: string) => {
    if (from === sessionsChannel) return endFromMessage(message);
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
  const endFromMessage = (message: string) => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(message);
    } catch {
      parsed = undefined;
    }
    const ended = SessionsEndedSchema.safeParse(parsed);
    if (!ended.success) return logger.warn('malformed sessions-ended message dropped');
    hub.end('user_id' in ended.data ? { userId: ended.data.user_id } : { sessionHash: ended.data.session_hash }, sessionEnded());
  };
  let checking = false;
  const check = () => {
    const hashes = hub.sessions();
    if (checking || hashes.length === 0) return;
    checking = true;
    checkSessions(hashes)
      .then(
        (valid) => {
          const ended = hub.endSessionsNotIn(hashes, valid, sessionEnded());
          if (ended) logger.info({ ended }, 'live feeds of ended sessions closed');
        },
        (err: unknown) => logger.warn({ err }, 'live feeds: sessions not checked; checked again later'),
      )
      .finally(() => (checking = false));
  };
  const checkTimer = setInterval(check, sessionCheckMs);
  checkTimer.unref();
  const closing = new AbortController();
  const subscribed = subscriber.subscribe(channel, sessionsChannel).then(() => undefined);
  subscribed.catch((err: unknown) => logger.warn({ err }, 'live feed could not subscribe'));
  return {
    hub,
    ready: () => subscribed,
    closing: closing.signal,
    async close() {
      if (closing.signal.aborted) return;
      closing.abort();
      clearInterval(checkTimer);
      subscriber.disconnect();
    },
  };
}
