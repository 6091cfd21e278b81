import type { BenchResult, FigureResult, ScenarioResult } from '../harness/model';
import { extraNodeFlags, extraServiceEnv } from '../harness/diagnostics';
import { formatNumber, spread } from '../harness/stats';

const range = (f: { min: number; max: number }) =>
  Number.isFinite(f.min) ? `${formatNumber(f.min)} – ${formatNumber(f.max)}` : '—';

function generatorCell(f: FigureResult, runs: number): string {
  if (!f.generatorCpu) return '';
  const sat = f.generatorSaturatedRuns ? ` ⚠ saturated in ${f.generatorSaturatedRuns}/${runs}` : '';
  return `${f.generatorCpu.median.toFixed(2)} (max ${f.generatorCpu.max.toFixed(2)})${sat}`;
}

/** The median, and how many runs it is of when some run did not measure the figure (NaN drops out of it). */
function medianCell(f: FigureResult): string {
  const measured = f.runs.filter((v) => Number.isFinite(v)).length;
  const partial = measured > 0 && measured < f.runs.length ? ` (${measured} of ${f.runs.length} runs)` : '';
  return `**${formatNumber(f.median)}**${partial}`;
}

export function figureTable(figures: FigureResult[], runs: number): string[] {
  const lines = [
    '| figure | median | min – max | unit | target | generator CPU, cores |',
    '| --- | ---: | ---: | --- | --- | --- |',
  ];
  for (const f of figures)
    lines.push(`| ${f.label} | ${medianCell(f)} | ${range(f)} | ${f.unit} | ${f.target ?? ''} | ${generatorCell(f, runs)} |`);
  return lines;
}

function componentLine(s: ScenarioResult): string | undefined {
  const names = new Set(s.runs.flatMap((r) => Object.keys(r.components ?? {})));
  if (!names.size) return undefined;
  const parts = [...names].map((n) => `${n} ${spread(s.runs.map((r) => r.components?.[n] ?? NaN)).median.toFixed(2)}`);
  return `CPU by process during the main load window (cores, median of runs): ${parts.join(' · ')}`;
}

function errorLine(s: ScenarioResult): string | undefined {
  const total = new Map<string, number>();
  for (const r of s.runs) for (const [k, v] of Object.entries(r.errors ?? {})) total.set(k, (total.get(k) ?? 0) + v);
  if (!total.size) return undefined;
  return `Errors by status, all runs: ${[...total].map(([k, v]) => `${k}: ${v}`).join(', ')}`;
}

export function renderMarkdown(r: BenchResult): string {
  const m = r.machine;
  const lines = [
    `# Bench ${r.startedAt} (${r.mode}, ${r.runsPerScenario} runs per scenario)`,
    '',
    `Machine: ${m.cores} cores (${m.cpuModel}), ${m.memoryMiB} MiB, ${m.kernel}; ${m.node}, ${m.postgres}, ${m.redis}; commit ${m.gitCommit}.`,
    `Load average before start: ${m.loadBefore.join(' / ')}${m.loadAfter ? `; after: ${m.loadAfter.join(' / ')}` : ''}.` +
      (m.foreignCpuCores !== undefined
        ? ` CPU used by processes the bench did not start, averaged over the bench: ${m.foreignCpuCores.toFixed(2)} cores.`
        : ''),
    ...(process.env.BENCH_REDIS_AOF === 'no'
      ? ['', '**Diagnostic run: Redis without its append-only file (BENCH_REDIS_AOF=no) — not how the product runs.**']
      : []),
    ...(extraNodeFlags().length
      ? [
          '',
          `**Diagnostic run: every service with extra node flags (BENCH_NODE_FLAGS=${extraNodeFlags().join(' ')}) — not how the product runs.**`,
        ]
      : []),
    ...(Object.keys(extraServiceEnv()).length
      ? [
          '',
          `**Diagnostic run: every service with extra settings (BENCH_SERVICE_ENV=${process.env.BENCH_SERVICE_ENV?.trim()}) — not the defaults.**`,
        ]
      : []),
    '',
    'Figures are the median of the runs with the min – max beside it. "generator CPU" is the load generator’s own',
    'CPU (this process; 1.00 = one full core) while the figure was measured: on a shared 2-core machine it is',
    'taken from the system under test. "⚠ saturated" means the generator’s event loop was ≥ 90 % busy: the figure',
    'is then a lower bound of what the system can do.',
    '',
  ];
  if (r.ratios.length) {
    lines.push('## Ratios (same run)', '', ...figureTable(r.ratios, r.runsPerScenario), '');
  }
  for (const s of r.scenarios) {
    lines.push(`## ${s.name}`, '', `_${s.goal}_`, '');
    if (s.status !== 'ok') {
      lines.push(`**${s.status}**: ${s.reason ?? ''}`, '');
      if (!s.figures.some((f) => Number.isFinite(f.median))) continue;
    }
    lines.push(...figureTable(s.figures, r.runsPerScenario), '');
    for (const extra of [componentLine(s), errorLine(s), ...s.notes]) if (extra) lines.push(`- ${extra}`);
    lines.push('');
  }
  return lines.join('\n');
}
