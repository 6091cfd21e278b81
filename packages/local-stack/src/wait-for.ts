/** Thrown by a `waitFor` check that knows waiting longer cannot help (the server exited): ends the wait at once. */
export class GiveUp extends Error {
  override readonly name: string = 'GiveUp';
}

/** Polls `check` until it returns true or `timeoutMs` passes; throws naming `what` (a GiveUp as it is). */
export async function waitFor(
  what: string,
  check: () => Promise<boolean> | boolean,
  timeoutMs = 30_000,
  intervalMs = 100,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch (err) {
      if (err instanceof GiveUp) throw err;
      lastError = err;
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(
    `timed out after ${timeoutMs} ms waiting for ${what}${lastError instanceof Error ? `: ${lastError.message}` : ''}`,
  );
}
