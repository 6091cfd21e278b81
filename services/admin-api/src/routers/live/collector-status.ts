import { z } from 'zod';
import { AppError } from '@pga/contracts';
import { authedProcedure, toTRPCError } from '../../trpc/init';
import type { LiveStatusEvent } from '../../live/live-status-event';

/**
 * Live collector status and counters (issue 3 §6), over SSE (`httpSubscriptionLink`): every
 * message the writer publishes on the status channel, optionally only for some collectors. Each
 * message is validated once for every subscriber (live/live-feed.ts), so there is no `.output()`
 * here: it re-validated every event for every subscriber. A subscriber that reads slower than
 * updates arrive gets the latest update of each collector, not every one (live/live-hub.ts). Open
 * feeds are capped per session, user and process (LIVE_FEED_MAX_PER_SESSION, _PER_USER,
 * LIVE_FEED_MAX_SUBSCRIBERS): past a cap the stream ends at once with TOO_MANY_REQUESTS naming it.
 * A stream ends with UNAUTHORIZED when its session ends (logout, disable, … in any admin process;
 * expiry; the periodic session check: live/live-feed.ts).
 */
export const collectorStatus = authedProcedure
  .input(z.object({ collector_ids: z.array(z.uuid()).max(1000).optional() }).optional())
  .subscription(async function* ({ ctx, input, signal }): AsyncGenerator<LiveStatusEvent, void, undefined> {
    const only = input?.collector_ids ? new Set(input.collector_ids) : undefined;
    const { deps } = ctx;
    const { hub, closing } = deps.liveFeed;
    const stop = signal ? AbortSignal.any([signal, closing]) : closing;
    try {
      yield* hub.stream(
        { userId: ctx.user.id, sessionHash: ctx.sessionHash },
        {
          signal: stop,
          ...(only ? { only } : {}),
          expiresAt: ctx.sessionExpiresAt ?? null,
          onEnded: () => ctx.closeConnectionAfter?.(deps.config.LIVE_FEED_CUTOFF_GRACE_MS),
        },
      );
    } catch (err) {
      // Thrown while streaming, where the appErrors middleware no longer applies.
      if (err instanceof AppError) throw toTRPCError(err);
      throw err;
    }
  });
