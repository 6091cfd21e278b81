/**
 * Calls `onOrphaned` once when this process's parent is no longer `parent` (the one it had at start;
 * checked every `everyMs`), and returns a function that stops watching. A supervisor that started `npx pga-collector` (npx → `sh -c` → node) sends
 * SIGTERM to npx: npx and its shell exit without passing it on, and the agent is re-parented (to
 * init or a subreaper) and would go on collecting. A parent that is init from the start (`node …`
 * under systemd) never changes, so that run is not affected. Same check as scripts/bootstrap.mjs.
 */
export function whenOrphaned(onOrphaned: () => void, parent = process.ppid, everyMs = 500): () => void {
  const timer = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(timer);
    onOrphaned();
  }, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
