import { z } from 'zod';
import { AppError } from '@pga/contracts';
import { authedProcedure, toTRPCError } from '../../trpc/init';
import { boundedSubscription } from '../../live/bounded-subscription';
import { LiveStatusEventSchema, type LiveStatusEvent } from '../../live/live-status-event';

/**
 * `.output()` for a subscription: tRPC hands the output parser the resolver's async iterable, so
 * this schema accepts an iterable and validates every event it yields.
 */
const LiveStatusStreamSchema = z
  .custom<AsyncIterable<LiveStatusEvent>>(
    (v) => typeof v === 'object' && v !== null && Symbol.asyncIterator in v,
    'expected an event stream',
  )
  .transform(async function* (events) {
    for await (const event of events) yield LiveStatusEventSchema.parse(event);
  });

/**
 * Live collector status and counters (issue 3 §6), over SSE (`httpSubscriptionLink`): every
 * message the writer publishes on the status channel, optionally only for some collectors. A
 * subscriber that falls LIVE_FEED_MAX_BACKLOG updates behind is cut off (services/admin-api/README.md
 * "Live feed"): the reason is its last event if it reads again within LIVE_FEED_CUTOFF_GRACE_MS,
 * and its connection is closed after that.
 */
export const collectorStatus = authedProcedure
  .input(z.object({ collector_ids: z.array(z.uuid()).max(1000).optional() }).optional())
  .output(LiveStatusStreamSchema)
  .subscription(async function* ({ ctx, input, signal }) {
    const only = input?.collector_ids ? new Set(input.collector_ids) : undefined;
    const { deps } = ctx;
    const { events, closing } = deps.liveFeed;
    const stop = signal ? AbortSignal.any([signal, closing]) : closing;
    try {
      yield* boundedSubscription<LiveStatusEvent>(events, 'status', {
        signal: stop,
        maxBacklog: deps.config.LIVE_FEED_MAX_BACKLOG,
        ...(only ? { accept: (e: LiveStatusEvent) => only.has(e.collector_id) } : {}),
        onCutOff(backlog) {
          deps.logger.warn({ user: ctx.user?.username, ip: ctx.ip, backlog }, 'live status subscriber too far behind: cut off');
          ctx.closeConnectionAfter?.(deps.config.LIVE_FEED_CUTOFF_GRACE_MS);
        },
      });
    } catch (err) {
      // Thrown while streaming, where the appErrors middleware no longer applies.
      if (err instanceof AppError) throw toTRPCError(err);
      throw err;
    }
  });
