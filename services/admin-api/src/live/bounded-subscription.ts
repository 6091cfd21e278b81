import type { EventEmitter } from 'node:events';
import { AppError } from '@pga/contracts';

export interface BoundedSubscriptionOptions<T> {
  /** Ends the subscription (the client went away, the service is closing). */
  signal: AbortSignal;
  /** Events left out (a filter); they never count towards the backlog. */
  accept?: (event: T) => boolean;
  /** Events queued for a subscriber that does not read before it is cut off. */
  maxBacklog: number;
  /** Called once when the subscriber is cut off, with the backlog it had. */
  onCutOff?: (backlog: number) => void;
}

/**
 * The events an emitter emits as `name`, like `events.on(emitter, name)` but with a bounded queue.
 * `events.on` buffers without limit, and tRPC pulls the next event only once the subscriber's
 * socket has drained: a browser tab that stops reading (a paused socket, a sleeping laptop) made the
 * service hold every status update since (~3 MB a minute at 230 updates/s). Here a subscriber that
 * falls more than `maxBacklog` events behind is cut off, as Redis does with a slow pub/sub client
 * (`client-output-buffer-limit pubsub`): its listener and queue are dropped at once, and its next
 * read throws an UNAVAILABLE AppError saying why (the client should reconnect and refetch).
 */
export async function* boundedSubscription<T>(
  emitter: EventEmitter,
  name: string,
  { signal, accept, maxBacklog, onCutOff }: BoundedSubscriptionOptions<T>,
): AsyncGenerator<T, void, undefined> {
  let queue: T[] = [];
  let head = 0;
  let cutOff = false;
  let wake: (() => void) | undefined;
  const listener = (event: T) => {
    if (accept && !accept(event)) return;
    if (queue.length - head >= maxBacklog) {
      const backlog = queue.length - head;
      cutOff = true;
      queue = [];
      head = 0;
      stop();
      onCutOff?.(backlog);
    } else queue.push(event);
    wake?.();
  };
  const onAbort = () => wake?.();
  const stop = () => {
    emitter.off(name, listener);
    signal.removeEventListener('abort', onAbort);
  };
  emitter.on(name, listener);
  signal.addEventListener('abort', onAbort);
  try {
    for (;;) {
      if (signal.aborted) return;
      if (head < queue.length) {
        const event = queue[head++]!;
        // Compact now and then, so a subscriber that keeps up does not grow the array for ever.
        if (head >= 1024 && head * 2 >= queue.length) {
          queue = queue.slice(head);
          head = 0;
        }
        yield event;
        continue;
      }
      if (cutOff)
        throw new AppError(
          'UNAVAILABLE',
          `this subscriber fell more than ${maxBacklog} status updates behind and was disconnected; reconnect and refetch`,
        );
      await new Promise<void>((resolve) => (wake = resolve));
      wake = undefined;
    }
  } finally {
    stop();
  }
}
