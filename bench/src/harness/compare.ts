import type { BenchResult, FigureResult } from './model';
import { formatNumber } from './stats';

export interface FigureChange {
  id: string;
  label: string;
  unit: string;
  before: number;
  after: number;
  /** (after − before) / before, in percent; NaN when either side is missing or before is 0. */
  changePct: number;
  verdict: 'better' | 'worse' | 'same' | 'regression' | 'new' | 'gone' | 'n/a';
}

function allFigures(result: BenchResult): Map<string, FigureResult> {
  const map = new Map<string, FigureResult>();
  for (const s of result.scenarios) for (const f of s.figures) map.set(`${s.name}/${f.key}`, f);
  for (const f of result.ratios) map.set(`ratios/${f.key}`, f);
  return map;
}

/**
 * Compares the medians of every figure. A change against a figure's `better` direction larger
 * than `tolerancePct` is a regression; smaller changes count as "same" (noise on a shared machine).
 */
export function compareResults(before: BenchResult, after: BenchResult, tolerancePct: number): FigureChange[] {
  const old = allFigures(before);
  const now = allFigures(after);
  const changes: FigureChange[] = [];
  for (const [id, f] of now) {
    const prev = old.get(id);
    if (!prev || !Number.isFinite(prev.median)) {
      changes.push({ id, label: f.label, unit: f.unit, before: NaN, after: f.median, changePct: NaN, verdict: 'new' });
      continue;
    }
    // From 0 (e.g. lost pushes) any change is infinitely large in its direction.
    const changePct =
      prev.median === 0
        ? f.median === 0
          ? 0
          : Math.sign(f.median) * Infinity
        : ((f.median - prev.median) / Math.abs(prev.median)) * 100;
    let verdict: FigureChange['verdict'] = 'same';
    if (Number.isNaN(changePct) || f.better === 'none') verdict = 'n/a';
    else {
      const gain = f.better === 'higher' ? changePct : -changePct;
      if (gain < -tolerancePct) verdict = 'regression';
      else if (gain < -1) verdict = 'worse';
      else if (gain > 1) verdict = 'better';
    }
    changes.push({ id, label: f.label, unit: f.unit, before: prev.median, after: f.median, changePct, verdict });
  }
  // Figures of scenarios that did not run this time (e.g. --scenario) are not "gone".
  const ran = new Set(after.scenarios.filter((s) => s.status === 'ok').map((s) => s.name));
  for (const [id, f] of old) {
    if (!now.has(id) && ran.has(id.split('/')[0]!))
      changes.push({ id, label: f.label, unit: f.unit, before: f.median, after: NaN, changePct: NaN, verdict: 'gone' });
  }
  return changes;
}

export function formatComparison(changes: FigureChange[], tolerancePct: number): string {
  const lines = [`Comparison (regression = worse by more than ${tolerancePct} %):`];
  for (const c of changes) {
    const pct = Number.isNaN(c.changePct)
      ? ''
      : Number.isFinite(c.changePct)
        ? `${c.changePct >= 0 ? '+' : ''}${c.changePct.toFixed(1)} %`
        : `${c.changePct > 0 ? '+' : '-'}∞`;
    const mark = c.verdict === 'regression' ? '✗ REGRESSION' : c.verdict;
    lines.push(
      `  ${c.id.padEnd(48)} ${formatNumber(c.before).padStart(10)} → ${formatNumber(c.after).padStart(10)} ${c.unit.padEnd(8)} ${pct.padStart(9)}  ${mark}`,
    );
  }
  return lines.join('\n');
}
