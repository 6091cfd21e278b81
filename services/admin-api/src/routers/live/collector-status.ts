import { on } from 'node:events';
import { z } from 'zod';
import { authedProcedure } from '../../trpc/init';
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
 * message the writer publishes on the status channel, optionally only for some collectors.
 */
export const collectorStatus = authedProcedure
  .input(z.object({ collector_ids: z.array(z.uuid()).max(1000).optional() }).optional())
  .output(LiveStatusStreamSchema)
  .subscription(async function* ({ ctx, input, signal }) {
    const only = input?.collector_ids ? new Set(input.collector_ids) : undefined;
    const { events, closing } = ctx.deps.liveFeed;
    const stop = signal ? AbortSignal.any([signal, closing]) : closing;
    for await (const [event] of on(events, 'status', { signal: stop })) {
      const e = event as LiveStatusEvent;
      if (!only || only.has(e.collector_id)) yield e;
    }
  });
