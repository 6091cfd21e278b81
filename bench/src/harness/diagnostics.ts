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
