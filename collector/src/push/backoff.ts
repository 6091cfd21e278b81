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
