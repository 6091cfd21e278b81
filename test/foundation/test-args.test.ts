import { describe, expect, it } from 'vitest';
import { parseCLI } from 'vitest/node';
import { fileFilters, runsMonitoringTests } from '../../scripts/lib/test-args.mjs';

// Argument lists of `npm test -- …` (scripts/test.ts hands them to `vitest run` as they are).
const cases: string[][] = [
  [],
  ['test/writer'],
  ['-t', 'heartbeat'],
  ['-t', 'monitoring', 'test/writer'],
  ['test/writer', '-t', 'monitoring'],
  ['--testNamePattern', 'x', 'test/monitoring'],
  ['--testNamePattern=monitoring'],
  ['-t=monitoring', 'test/edge'],
  ['--reporter', 'verbose', 'test/edge', '--bail', '1'],
  ['--coverage', 'test/edge'],
  ['--no-file-parallelism', 'test/monitoring'],
  ['--run', 'alerts'],
  ['--project', 'p', '--shard', '1/2', 'test/admin', 'test/edge'],
  ['-u', 'test/edge'],
  ['--coverage.enabled', 'test/edge', '--coverage.provider', 'v8', 'test/admin'],
  ['test/edge', '--', 'test/monitoring'],
];

describe('npm test argument parsing (scripts/lib/test-args.mjs)', () => {
  it("takes an option's value for no file filter, as vitest itself does", () => {
    expect(fileFilters(['-t', 'monitoring', 'test/writer'])).toEqual(['test/writer']);
    expect(fileFilters(['-t', 'heartbeat'])).toEqual([]);
    for (const args of cases) expect(fileFilters(args), args.join(' ')).toEqual(parseCLI(['vitest', ...args]).filter);
  });

  it('fetches promtool for the runs that include test/monitoring only', () => {
    expect(runsMonitoringTests([])).toBe(true);
    expect(runsMonitoringTests(['-t', 'heartbeat'])).toBe(true); // every file, test/monitoring among them
    expect(runsMonitoringTests(['test/writer', '-t', 'monitoring'])).toBe(false);
    expect(runsMonitoringTests(['-t', 'monitoring', 'test/writer'])).toBe(false);
    expect(runsMonitoringTests(['-t', 'x', 'test/monitoring'])).toBe(true);
    expect(runsMonitoringTests(['alerts'])).toBe(true);
    expect(runsMonitoringTests(['./test/monitoring/alerts.test.ts', '-t', 'promtool'])).toBe(true);
    expect(runsMonitoringTests(['test/edge'])).toBe(false);
  });
});
