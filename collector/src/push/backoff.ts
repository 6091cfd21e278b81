/**
 * Delay before retry number `attempt` (1-based): exponential from `baseMs`, capped at `maxMs`,
 * with "equal jitter" (half fixed, half random) so a fleet coming back after an outage spreads
 * out yet never retries in a tight loop.
 */
export function backoffDelay(
  attempt: number,
  { baseMs, maxMs }: { baseMs: number; maxMs: number },
  random = Math.random,
): number {
  const exp = Math.min(maxMs, baseMs * 2 ** Math.min(attempt - 1, 30));
  return Math.round(exp / 2 + random() * (exp / 2));
}

/** Longest random share added to a `Retry-After` (the jitter step's cap), ms. */
export const RETRY_AFTER_JITTER_MAX_MS = 30_000;

/**
 * Delay before retry number `attempt` (1-based) of a push answered 429/503 with `Retry-After`:
 * never earlier than the edge asked, plus "full jitter" over the exponential step of `attempt`
 * (`baseMs` doubling per failure, capped at `maxMs`). The edge gives every collector the same
 * `Retry-After` (1 s while Redis is unreachable, 5 s while it is over its memory budget): waiting
 * exactly that long kept a whole fleet retrying in step, once a second for the whole outage, and
 * brought every collector's backlog back within the same second when it ended.
 */
export function retryAfterDelay(
  retryAfterMs: number,
  attempt: number,
  { baseMs, maxMs }: { baseMs: number; maxMs: number },
  random = Math.random,
): number {
  // The step is capped at RETRY_AFTER_JITTER_MAX_MS: the edge already said when to come back, and a
  // step grown to minutes through a long outage left a few collectors minutes behind the others.
  const exp = Math.min(maxMs, RETRY_AFTER_JITTER_MAX_MS, baseMs * 2 ** Math.min(attempt - 1, 30));
  return Math.round(retryAfterMs + random() * exp);
}
