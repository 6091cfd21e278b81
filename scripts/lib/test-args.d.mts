/** The file filters among `npm test -- …`'s arguments: not the options nor their values (test-args.mjs). */
export function fileFilters(args: readonly string[]): string[];
/** Whether `npm test -- …args` runs test/monitoring (and so needs promtool). */
export function runsMonitoringTests(args: readonly string[]): boolean;
