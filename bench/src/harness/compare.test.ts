import { describe, expect, it } from 'vitest';
import { compareResults } from './compare';
import type { BenchResult, FigureResult } from './model';
import { computeRatios } from './ratios';
import { median, spread } from './stats';

const fig = (key: string, better: FigureResult['better'], runs: number[]): FigureResult => ({
  key,
  label: key,
  unit: 'x',
  better,
  runs,
  ...spread(runs),
  generatorSaturatedRuns: 0,
});

const result = (figures: FigureResult[], name = 'ingest-e2e'): BenchResult => ({
  schema: 1,
  startedAt: '',
  finishedAt: '',
  mode: 'quick',
  runsPerScenario: 3,
  argv: [],
  machine: {
    hostname: '',
    cpuModel: '',
    cores: 2,
    memoryMiB: 0,
    kernel: '',
    node: '',
    postgres: '',
    redis: '',
    gitCommit: '',
    loadBefore: [],
  },
  tolerancePct: 10,
  scenarios: [{ name, goal: '', status: 'ok', durationMs: 0, figures, runs: [], notes: [] }],
  ratios: [],
});

describe('median and spread', () => {
  it('take the middle of the runs and ignore missing values', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(spread([5, NaN, 1, 3])).toEqual({ median: 3, min: 1, max: 5 });
    expect(Number.isNaN(spread([]).median)).toBe(true);
  });
});

describe('compareResults', () => {
  const before = result([fig('rate', 'higher', [100, 100, 100]), fig('p99', 'lower', [10, 10, 10]), fig('old', 'higher', [1])]);

  it('flags a drop of a higher-is-better figure beyond the tolerance as a regression', () => {
    const after = result([fig('rate', 'higher', [85, 85, 85]), fig('p99', 'lower', [10, 10, 10])]);
    const changes = compareResults(before, after, 10);
    const rate = changes.find((c) => c.id === 'ingest-e2e/rate')!;
    expect(rate.changePct).toBeCloseTo(-15);
    expect(rate.verdict).toBe('regression');
    expect(changes.find((c) => c.id === 'ingest-e2e/p99')!.verdict).toBe('same');
    expect(changes.find((c) => c.id === 'ingest-e2e/old')!.verdict).toBe('gone');
  });

  it('treats a rise of a lower-is-better figure as worse, and within tolerance not as a regression', () => {
    const after = result([fig('rate', 'higher', [120, 120, 120]), fig('p99', 'lower', [10.5, 10.5, 10.5])]);
    const changes = compareResults(before, after, 10);
    expect(changes.find((c) => c.id === 'ingest-e2e/rate')!.verdict).toBe('better');
    expect(changes.find((c) => c.id === 'ingest-e2e/p99')!.verdict).toBe('worse');
    expect(changes.some((c) => c.verdict === 'regression')).toBe(false);
    const slower = compareResults(before, result([fig('p99', 'lower', [12, 12, 12])]), 10);
    expect(slower.find((c) => c.id === 'ingest-e2e/p99')!.verdict).toBe('regression');
  });

  it('treats any loss after a run without loss as a regression', () => {
    const lost = (runs: number[]) => result([fig('lost', 'lower', runs)]);
    expect(compareResults(lost([0, 0, 0]), lost([0, 2, 3]), 50)[0]!.verdict).toBe('regression');
    expect(compareResults(lost([0, 0, 0]), lost([0, 0, 0]), 50)[0]!.verdict).toBe('same');
  });

  it('reports figures that did not exist before as new', () => {
    const after = result([fig('fresh', 'lower', [1, 2, 3])]);
    expect(compareResults(before, after, 10).find((c) => c.id === 'ingest-e2e/fresh')!.verdict).toBe('new');
  });
});

describe('computeRatios', () => {
  it('divides run i by run i and takes the median of the ratios', () => {
    const scenarios = [
      result([fig('sustained_pushes_per_s', 'higher', [10, 20, 30])]).scenarios[0]!,
      result([fig('best_pushes_per_s', 'higher', [20, 20, 20])], 'copy-limit').scenarios[0]!,
    ];
    const [ratio] = computeRatios(scenarios);
    expect(ratio!.key).toBe('e2e_over_copy_limit');
    expect(ratio!.runs).toEqual([0.5, 1, 1.5]);
    expect(ratio!.median).toBe(1);
    expect(ratio!.min).toBe(0.5);
  });
});
