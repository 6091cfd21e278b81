// Which of `npm test -- …`'s arguments are vitest's file filters. Plain JavaScript with no
// dependencies: scripts/bootstrap.mjs reads it before npm dependencies are installed (to decide
// whether the run includes test/monitoring and so needs promtool).
//
// vitest (cac) gives every option the token after it as its value unless the option is a boolean
// one (or that token is itself an option): `-t heartbeat test/writer` filters files by test/writer
// only, `heartbeat` being -t's value. `--name=value` is one token. test/foundation/test-args.test.ts
// checks this against vitest's own parsing.

/** vitest's options that take no value (its CLI definitions without an argument), `-w` included. */
const BOOLEAN_OPTIONS = new Set([
  'watch',
  'w',
  'ui',
  'open',
  'hideSkippedTests',
  'coverage',
  'isolate',
  'globals',
  'dom',
  'fileParallelism',
  'passWithNoTests',
  'logHeapUsage',
  'detectAsyncLeaks',
  'allowOnly',
  'dangerouslyIgnoreUnhandledErrors',
  'expandSnapshotDiff',
  'disableConsoleIntercept',
  'typecheck',
  'cache',
  'printConsoleTrace',
  'includeTaskLocation',
  'run',
  'color',
  'clearScreen',
  'standalone',
  'clearCache',
  'strictTags',
]);

/** Whether the option token `arg` (no `=` in it) takes the next token as its value. */
function takesValue(arg) {
  const name = arg.replace(/^--?/, '');
  if (name.startsWith('no-')) return false;
  if (name.endsWith('.enabled')) return false;
  return !BOOLEAN_OPTIONS.has(name);
}

/**
 * The file filters among `args` (what follows `npm test --`): the positional arguments, not the
 * options nor their values. Everything after a bare `--` is left out, as vitest leaves it out.
 * @param {readonly string[]} args
 * @returns {string[]}
 */
export function fileFilters(args) {
  const filters = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === '--') break;
    if (!arg.startsWith('-') || arg === '-') {
      filters.push(arg);
      continue;
    }
    if (arg.includes('=')) continue;
    const next = args[i + 1];
    if (takesValue(arg) && next !== undefined && !next.startsWith('-')) i++;
  }
  return filters;
}

/**
 * Whether `npm test -- …args` runs test/monitoring (and so needs promtool): a run with no file
 * filter runs every file; otherwise one filter must match that file's path (vitest matches a filter
 * as a substring of the path) or name the monitoring folder.
 * @param {readonly string[]} args
 * @returns {boolean}
 */
export function runsMonitoringTests(args) {
  const filters = fileFilters(args);
  return (
    filters.length === 0 ||
    filters.some((f) => 'test/monitoring/alerts.test.ts'.includes(f.replace(/^\.\//, '')) || f.includes('monitoring'))
  );
}
