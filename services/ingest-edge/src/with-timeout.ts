/** What `withTimeout` rejects with: no answer in time (the work itself may still finish). */
export class NoAnswerError extends Error {
  override readonly name = 'NoAnswerError';
}

/** How often the loop clock ticks; a gap between two ticks counts for at most two ticks. */
const LOOP_TICK_MS = 100;
let loopMs = 0;
let tickedAt = performance.now();
let ticker: NodeJS.Timeout | undefined;
const tick = () => {
  const now = performance.now();
  loopMs += Math.min(now - tickedAt, 2 * LOOP_TICK_MS);
  tickedAt = now;
};

/**
 * Milliseconds this process's event loop was free to run (monotonic). It stands still while the loop
 * is blocked — a 64 MiB push parsed, hashed and encoded in one go takes seconds on a busy machine —
 * save for at most two ticks of each block, so a deadline measured with it (of more than those
 * 200 ms) is not missed because this process could not read the answer (after a block, overdue
 * timers run before the socket reads waiting behind them: a wall-clock deadline answered 503 for
 * pushes Redis had stored, and counted Redis as silent). Under a loop that is busy but not blocked,
 * ticks come late and it runs slower than the wall clock: deadlines stretch, they do not shrink.
 */
export function loopClock(): number {
  if (ticker === undefined) {
    ticker = setInterval(tick, LOOP_TICK_MS);
    ticker.unref();
  }
  return loopMs + Math.min(performance.now() - tickedAt, 2 * LOOP_TICK_MS);
}

/**
 * Rejects when `promise` has not settled within `ms` of loop time (`loopClock`; the promise itself
 * goes on). `what`: who did not answer.
 */
export function withTimeout<T>(promise: Promise<T>, ms: number, what = 'Redis'): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const deadline = loopClock() + ms;
    const check = () => {
      const left = deadline - loopClock();
      if (left > 0) timer = setTimeout(check, left);
      else reject(new NoAnswerError(`no answer from ${what} within ${ms} ms`));
    };
    let timer = setTimeout(check, ms);
    promise.then(
      (v) => (clearTimeout(timer), resolve(v)),
      (e: unknown) => (clearTimeout(timer), reject(e instanceof Error ? e : new Error(String(e)))),
    );
  });
}
