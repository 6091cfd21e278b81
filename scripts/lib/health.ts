import { waitFor } from '@pga/local-stack';

/** Waits until `url` answers 200. */
export function waitForHealth(url: string, timeoutMs = 60_000): Promise<void> {
  return waitFor(url, async () => (await fetch(url)).ok, timeoutMs, 200);
}
