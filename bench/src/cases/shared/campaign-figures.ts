import { spectrum } from '../../harness/latency-recorder';
import type { FigureDef, Measurement, RunOutput } from '../../harness/model';
import type { CampaignPhase } from './push-campaign';

/** The open-loop steps every push scenario reports as figures (fractions of its closed-loop max). */
export const REPORTED_STEPS = [25, 50, 75, 100] as const;
export const QUICK_FRACTIONS = [0.25, 0.5, 0.75, 1.0];
export const FULL_FRACTIONS = [0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.2];

/** Figure definitions shared by design-baseline and ingest-e2e. */
export function campaignFigureDefs(latencyTarget?: string, maxTarget?: string): FigureDef[] {
  const defs: FigureDef[] = [
    {
      key: 'max_acked_per_s',
      label: 'closed-loop max: acknowledged pushes/s',
      unit: 'push/s',
      better: 'higher',
      ...(maxTarget ? { target: maxTarget } : {}),
    },
    { key: 'closed_p50_ms', label: 'closed-loop ack latency p50 (service time)', unit: 'ms', better: 'lower' },
    { key: 'closed_p99_ms', label: 'closed-loop ack latency p99 (service time)', unit: 'ms', better: 'lower' },
  ];
  for (const pct of REPORTED_STEPS) {
    defs.push({
      key: `open_${pct}_acked_per_s`,
      label: `open loop at ${pct} % of max: acked/s`,
      unit: 'push/s',
      better: 'higher',
    });
    if (pct === 50) {
      defs.push(
        { key: 'open_50_p50_ms', label: 'open loop at 50 %: ack latency p50', unit: 'ms', better: 'lower' },
        { key: 'open_50_p90_ms', label: 'open loop at 50 %: ack latency p90', unit: 'ms', better: 'lower' },
        {
          key: 'open_50_p99_ms',
          label: 'open loop at 50 %: ack latency p99',
          unit: 'ms',
          better: 'lower',
          ...(latencyTarget ? { target: latencyTarget } : {}),
        },
        { key: 'open_50_p999_ms', label: 'open loop at 50 %: ack latency p99.9', unit: 'ms', better: 'lower' },
        { key: 'open_50_max_ms', label: 'open loop at 50 %: ack latency max', unit: 'ms', better: 'lower' },
        {
          key: 'open_50_gen_delay_p99_ms',
          label: 'open loop at 50 %: the generator’s own event-loop delay p99 (its share of the tail)',
          unit: 'ms',
          better: 'lower',
        },
        {
          key: 'open_50_gen_delay_max_ms',
          label: 'open loop at 50 %: the generator’s own event-loop delay max',
          unit: 'ms',
          better: 'lower',
        },
      );
    } else {
      defs.push({
        key: `open_${pct}_p99_ms`,
        label: `open loop at ${pct} % of max: ack latency p99`,
        unit: 'ms',
        better: 'lower',
      });
    }
  }
  return defs;
}

/** Figures of an open-loop step at a fixed rate (campaignOutput's `open_<rate>_*` keys). */
export function fixedRateFigureDefs(
  rate: number,
  { note = '', p99Target }: { note?: string; p99Target?: string } = {},
): FigureDef[] {
  const step = `open loop at ${rate.toLocaleString('en-US')}/s${note}`;
  return [
    { key: `open_${rate}_acked_per_s`, label: `${step}: acked/s`, unit: 'push/s', better: 'higher' },
    {
      key: `open_${rate}_p99_ms`,
      label: `${step}: ack latency p99`,
      unit: 'ms',
      better: 'lower',
      ...(p99Target ? { target: p99Target } : {}),
    },
    {
      key: `open_${rate}_gen_delay_max_ms`,
      label: `${step}: the generator’s own event-loop delay max (its share of the tail)`,
      unit: 'ms',
      better: 'lower',
    },
  ];
}

/** Figures, charts data and error counts of a campaign's phases. */
export function campaignOutput(
  phases: CampaignPhase[],
): Required<Pick<RunOutput, 'figures' | 'timelines' | 'spectra' | 'bins' | 'errors'>> {
  const figures: Record<string, Measurement> = {};
  const timelines: RunOutput['timelines'] = {};
  const spectra: RunOutput['spectra'] = {};
  const bins: RunOutput['bins'] = {};
  const errors: Record<string, number> = {};
  let offset = 0;
  for (const phase of phases) {
    const r = phase.result;
    const s = r.recorder.summary();
    const g = r.generator;
    timelines[phase.name] = r.recorder.timeline(offset);
    offset += Math.ceil(r.elapsedMs / 1000);
    spectra[phase.name] = spectrum(r.recorder.total);
    bins[phase.name] = r.recorder.histogramBins();
    for (const [k, v] of r.recorder.errorsByStatus) errors[k] = (errors[k] ?? 0) + v;
    if (r.unsent) errors['not sent (generator backlog)'] = (errors['not sent (generator backlog)'] ?? 0) + r.unsent;
    if (phase.derived) continue;
    if (phase.ratePerS === undefined) {
      figures.max_acked_per_s = { value: r.okPerS, generator: g };
      figures.closed_p50_ms = { value: s.p50, generator: g };
      figures.closed_p99_ms = { value: s.p99, generator: g };
      continue;
    }
    if (phase.fraction === undefined) {
      figures[`open_${phase.ratePerS}_acked_per_s`] = { value: r.okPerS, generator: g };
      figures[`open_${phase.ratePerS}_p99_ms`] = { value: s.p99, generator: g };
      if (g.loopDelayMaxMs !== undefined)
        figures[`open_${phase.ratePerS}_gen_delay_max_ms`] = { value: g.loopDelayMaxMs, generator: g };
      continue;
    }
    const pct = Math.round(phase.fraction * 100);
    if (!(REPORTED_STEPS as readonly number[]).includes(pct)) continue;
    figures[`open_${pct}_acked_per_s`] = { value: r.okPerS, generator: g };
    figures[`open_${pct}_p99_ms`] = { value: s.p99, generator: g };
    if (pct === 50) {
      figures.open_50_p50_ms = { value: s.p50, generator: g };
      figures.open_50_p90_ms = { value: s.p90, generator: g };
      figures.open_50_p999_ms = { value: s.p999, generator: g };
      figures.open_50_max_ms = { value: s.max, generator: g };
      if (g.loopDelayP99Ms !== undefined) figures.open_50_gen_delay_p99_ms = { value: g.loopDelayP99Ms, generator: g };
      if (g.loopDelayMaxMs !== undefined) figures.open_50_gen_delay_max_ms = { value: g.loopDelayMaxMs, generator: g };
    }
  }
  for (const phase of phases) phase.result.recorder.destroy();
  return { figures, timelines, spectra, bins, errors };
}
