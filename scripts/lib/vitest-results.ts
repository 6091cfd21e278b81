/** What `npm test` counts from vitest's JSON report (scripts/test.ts). */
export interface VitestResults {
  numPassedTests: number;
  numFailedTests: number;
  numTotalTests: number;
  testResults: { name: string; status: string; message?: string; assertionResults: { status: string }[] }[];
}

/**
 * Passed and failed tests, plus each failure that no failed test explains: a test file that
 * failed without a failed test in it. That is a file that failed to load (syntax error: no test
 * results at all) or whose beforeAll threw (its tests are all reported `skipped`, and
 * numFailedTests stays 0): counted, or `npm test` would close on "0 failed" and exit 0 for it.
 * `vitestOk` is vitest's own exit status: failing with nothing else to explain it means errors
 * that escaped a test.
 */
export function countVitestResults(
  results: VitestResults,
  vitestOk: boolean,
  relative: (file: string) => string = (f) => f,
): { passed: number; failed: number; failures: string[] } {
  const failures: string[] = [];
  for (const file of results.testResults)
    if (file.status === 'failed' && !file.assertionResults.some((a) => a.status === 'failed')) failures.push(relative(file.name));
  if (results.numTotalTests === 0) failures.push('vitest ran no test');
  const explained = results.numFailedTests > 0 || results.testResults.some((f) => f.status === 'failed');
  if (!vitestOk && !explained) failures.push('vitest: unhandled errors (see above)');
  return { passed: results.numPassedTests, failed: results.numFailedTests + failures.length, failures };
}
