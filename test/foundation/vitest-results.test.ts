import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { expect, it } from 'vitest';
import { countVitestResults, type VitestResults } from '../../scripts/lib/vitest-results';

const root = path.resolve(import.meta.dirname, '../..');

/** vitest's real JSON report for a file of `source`, run in a folder of its own. */
function report(source: string): { results: VitestResults; ok: boolean } {
  const dir = path.join(root, '.data', `vitest-results-${process.pid}-${Math.random().toString(36).slice(2)}`);
  mkdirSync(dir, { recursive: true });
  try {
    writeFileSync(path.join(dir, 'vitest.config.mjs'), 'export default { test: { include: ["*.test.mjs"] } };\n');
    writeFileSync(path.join(dir, 'probe.test.mjs'), source);
    const out = path.join(dir, 'report.json');
    const run = spawnSync(
      path.join(root, 'node_modules/.bin/vitest'),
      ['run', '--root', dir, '--config', path.join(dir, 'vitest.config.mjs'), '--reporter=json', `--outputFile.json=${out}`],
      { cwd: dir, encoding: 'utf8' },
    );
    return { results: JSON.parse(readFileSync(out, 'utf8')) as VitestResults, ok: run.status === 0 };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

it('counts a file whose beforeAll threw as a failure (vitest reports its tests skipped, none failed)', () => {
  const { results, ok } = report(
    `import { beforeAll, it } from 'vitest';\nbeforeAll(() => { throw new Error('setup broke'); });\nit('a', () => {});\nit('b', () => {});\n`,
  );
  expect([ok, results.numFailedTests, results.testResults[0]!.assertionResults.map((a) => a.status)]).toEqual([
    false,
    0,
    ['skipped', 'skipped'],
  ]);
  const counted = countVitestResults(results, ok);
  expect(counted.failed).toBe(1);
  expect(counted.failures).toEqual([results.testResults[0]!.name]);
});

it('counts a failed test once, a file that does not load once, and a clean run as clean', () => {
  const failing = report(`import { it, expect } from 'vitest';\nit('a', () => expect(1).toBe(2));\nit('b', () => {});\n`);
  expect(countVitestResults(failing.results, failing.ok)).toMatchObject({ passed: 1, failed: 1, failures: [] });
  const broken = report(`import { it } from 'vitest';\nthrow new Error('does not load');\nit('a', () => {});\n`);
  expect(countVitestResults(broken.results, broken.ok).failures).toEqual([
    broken.results.testResults[0]!.name,
    'vitest ran no test',
  ]);
  const clean = report(`import { it } from 'vitest';\nit('a', () => {});\n`);
  expect(countVitestResults(clean.results, clean.ok)).toEqual({ passed: 1, failed: 0, failures: [] });
});
