/** What `withTimeout` rejects with: no answer in time (the work itself may still finish). */
export class NoAnswerError extends Error {
  override readonly name = 'NoAnswerError';
}

/** Rejects when `promise` has not settled within `ms` (the promise itself goes on). `what`: who did not answer. */
export function withTimeout<T>(promise: Promise<T>, ms: number, what = 'Redis'): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new NoAnswerError(`no answer from ${what} within ${ms} ms`)), ms);
    promise.then(
      (v) => (clearTimeout(timer), resolve(v)),
      (e: unknown) => (clearTimeout(timer), reject(e instanceof Error ? e : new Error(String(e)))),
    );
  });
}
