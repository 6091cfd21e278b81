import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readCompareFile } from './cli';

const root = path.resolve(import.meta.dirname, '../..');

describe('--compare FILE', () => {
  const benchDir = mkdtempSync(path.join(os.tmpdir(), 'bench-cli-'));
  afterAll(() => rmSync(benchDir, { recursive: true, force: true }));
  const results = { schema: 1, scenarios: [], ratios: [] };
  mkdirSync(path.join(benchDir, 'results'));
  writeFileSync(path.join(benchDir, 'results', 'run.json'), JSON.stringify(results));
  writeFileSync(path.join(benchDir, 'top.json'), JSON.stringify(results));
  writeFileSync(path.join(benchDir, 'results', 'broken.json'), '{"schema":');

  it('finds a results file as given, from bench/, or from bench/results/ where runs are written', () => {
    expect(readCompareFile('run.json', benchDir).file).toBe(path.join(benchDir, 'results', 'run.json'));
    expect(readCompareFile('results/run.json', benchDir).file).toBe(path.join(benchDir, 'results', 'run.json'));
    expect(readCompareFile('top.json', benchDir).file).toBe(path.join(benchDir, 'top.json'));
    const absolute = path.join(benchDir, 'results', 'run.json');
    expect(readCompareFile(absolute, benchDir)).toEqual({ file: absolute, result: results });
  });

  it('a missing file or one that is not a results JSON is one line', () => {
    expect(() => readCompareFile('nope.json', benchDir)).toThrowError(
      /^--compare: cannot read nope\.json \(ENOENT; looked in the current folder, bench\/ and bench\/results\/\)$/,
    );
    expect(() => readCompareFile('broken.json', benchDir)).toThrowError(
      `--compare: ${path.join(benchDir, 'results', 'broken.json')} is not a bench results JSON`,
    );
  });

  it('npm run bench -- --compare with a missing file exits 2 (bad arguments) with one line, before starting anything', () => {
    // It crashed with exit 1 and a stack (the file was read with no check).
    const res = spawnSync(
      process.execPath,
      ['--import', 'tsx', path.join(root, 'bench/src/main.ts'), '--compare', 'no-such-run.json'],
      {
        cwd: root,
        encoding: 'utf8',
        timeout: 60_000,
      },
    );
    expect(res.status, res.stderr).toBe(2);
    expect(res.stderr.trim()).toBe(
      '--compare: cannot read no-such-run.json (ENOENT; looked in the current folder, bench/ and bench/results/)',
    );
    expect(res.stdout).toBe('');
  });
});
