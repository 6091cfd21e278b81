/**
 * BENCH_NODE_FLAGS (diagnosis): extra node/V8 flags for every service the bench starts, after the
 * service's own (e.g. `--trace-gc`, or a heap setting to try without editing service-build.ts).
 * The report's header names them: such a run is not how the product runs.
 */
export function extraNodeFlags(env: Record<string, string | undefined> = process.env): string[] {
  return (env.BENCH_NODE_FLAGS ?? '').split(/\s+/).filter(Boolean);
}

/** `[...flags, script]` with `extra` after the flags (a later V8 flag overrides an earlier one). */
export const withFlagsBeforeScript = (args: readonly string[], extra: readonly string[]): string[] => [
  ...args.slice(0, -1),
  ...extra,
  ...args.slice(-1),
];

/**
 * BENCH_SERVICE_ENV (diagnosis): `NAME=value` pairs, separated by spaces, added to every service's
 * environment over the bench's own (e.g. `EDGE_PROCESSES=1` or `WRITER_FLUSH_PARALLELISM=1`, to
 * compare a setting without editing a scenario). The report's header names them.
 */
export function extraServiceEnv(env: Record<string, string | undefined> = process.env): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of (env.BENCH_SERVICE_ENV ?? '').split(/\s+/).filter(Boolean)) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new Error(`BENCH_SERVICE_ENV: "${pair}" is not NAME=value`);
    out[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return out;
}
