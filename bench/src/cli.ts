import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { BenchResult } from './harness/model';

export interface CliOptions {
  full: boolean;
  scenarios: string[];
  compare?: string;
  tolerancePct: number;
  runs: number;
  outDir: string;
}

export const USAGE = `npm run bench [-- options]
  --full               full sizes (longer steps, more load levels); default is the quick suite (≤ 5 min on 2 cores)
  --scenario NAME      run only this scenario (repeatable): copy-limit, design-baseline, edge-ceiling,
                       ingest-edge, ingest-e2e, pg-stall and large-pushes (full suite only unless named), connections,
                       admin-api, bulk-import, collector
  --compare FILE       compare with an earlier results JSON (path from the current folder, bench/ or bench/results/);
                       exit 3 when a figure regressed beyond the tolerance
  --tolerance PCT      regression tolerance in percent for --compare; default 15
  --runs N             runs per scenario; default 3
  --out DIR            where results go; default bench/results`;

export function parseCli(argv: string[], defaultOut: string): CliOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      full: { type: 'boolean', default: false },
      scenario: { type: 'string', multiple: true },
      compare: { type: 'string' },
      tolerance: { type: 'string', default: '15' },
      runs: { type: 'string', default: '3' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const tolerancePct = Number(values.tolerance);
  const runs = Number(values.runs);
  if (!Number.isFinite(tolerancePct) || tolerancePct < 0) throw new Error('--tolerance must be a non-negative number');
  if (!Number.isInteger(runs) || runs < 1 || runs > 20) throw new Error('--runs must be a whole number 1–20');
  return {
    full: values.full ?? false,
    scenarios: values.scenario ?? [],
    ...(values.compare ? { compare: values.compare } : {}),
    tolerancePct,
    runs,
    outDir: values.out ?? defaultOut,
  };
}

/**
 * The results JSON `--compare` names: the path as given (from the current folder), else from
 * bench/, else from bench/results/ (where runs are written). Throws one line when none is a readable
 * results JSON: a bad argument (exit 2), found before anything starts.
 */
export function readCompareFile(name: string, benchDir: string): { file: string; result: BenchResult } {
  const candidates = [...new Set([path.resolve(name), path.resolve(benchDir, name), path.resolve(benchDir, 'results', name)])];
  let firstError: unknown;
  for (const file of candidates) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      firstError ??= err;
      continue;
    }
    let result: Partial<BenchResult> | undefined;
    try {
      result = JSON.parse(text) as Partial<BenchResult>;
    } catch {
      // answered below
    }
    if (result?.schema !== 1 || !Array.isArray(result.scenarios))
      throw new Error(`--compare: ${file} is not a bench results JSON`);
    return { file, result: result as BenchResult };
  }
  const code = (firstError as { code?: string } | undefined)?.code ?? 'unreadable';
  throw new Error(`--compare: cannot read ${name} (${code}; looked in the current folder, bench/ and bench/results/)`);
}
