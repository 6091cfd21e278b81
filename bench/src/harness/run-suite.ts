import type { FigureResult, Measurement, RunOutput, ScenarioResult } from './model';
import type { Scenario, ScenarioContext } from './scenario';
import { spread } from './stats';

/** Turns the per-run measurements of each declared figure into median / min–max. */
export function aggregate(scenario: Scenario, outputs: RunOutput[]): FigureResult[] {
  return scenario.figures.map((def) => {
    const ms: (Measurement | undefined)[] = outputs.map((o) => o.figures[def.key]);
    const runs = ms.map((m) => m?.value ?? Number.NaN);
    const withGen = ms.filter((m): m is Measurement & { generator: NonNullable<Measurement['generator']> } => !!m?.generator);
    return {
      ...def,
      ...spread(runs),
      runs,
      ...(withGen.length ? { generatorCpu: spread(withGen.map((m) => m.generator.cpuCores)) } : {}),
      generatorSaturatedRuns: withGen.filter((m) => m.generator.saturated).length,
    };
  });
}

/** Runs one scenario `ctx.runs` times (fresh data before each run) and aggregates its figures. */
export async function runScenario(scenario: Scenario, base: Omit<ScenarioContext, 'run' | 'label'>): Promise<ScenarioResult> {
  const started = Date.now();
  const result = (status: ScenarioResult['status'], extra: Partial<ScenarioResult> = {}): ScenarioResult => ({
    name: scenario.name,
    goal: scenario.goal,
    status,
    durationMs: Date.now() - started,
    figures: [],
    runs: [],
    notes: [],
    ...extra,
  });
  const missing = scenario.unavailable?.();
  if (missing) return result('skipped', { reason: missing });
  const outputs: RunOutput[] = [];
  const ctx: ScenarioContext = { ...base, run: 0, label: scenario.name };
  try {
    await scenario.setup?.(ctx);
    for (let run = 1; run <= base.runs; run++) {
      ctx.run = run;
      ctx.label = `${scenario.name} run ${run}/${base.runs}`;
      base.progress.update(`${ctx.label}: resetting data`);
      await base.stack.resetData();
      outputs.push(await scenario.run(ctx));
    }
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    base.progress.log(`✗ ${scenario.name} failed: ${reason}`);
    return result('failed', {
      reason: [reason, ...runFailures(outputs)].join('; '),
      figures: aggregate(scenario, outputs),
      runs: outputs.map(stripFigures),
      notes: mergeNotes(outputs),
    });
  } finally {
    await scenario.teardown?.(ctx).catch((err: unknown) => base.progress.log(`  teardown of ${scenario.name}: ${String(err)}`));
  }
  const failures = runFailures(outputs);
  return result(failures.length ? 'failed' : 'ok', {
    ...(failures.length ? { reason: failures.join('; ') } : {}),
    figures: aggregate(scenario, outputs),
    runs: outputs.map(stripFigures),
    notes: mergeNotes(outputs),
  });
}

/** The failures the runs reported (an audit, a queue that never drained), each naming its run. */
export function runFailures(outputs: Pick<RunOutput, 'failures'>[]): string[] {
  return outputs.flatMap((o, i) => (o.failures ?? []).map((f) => `run ${i + 1}: ${f}`));
}

/**
 * The notes of all runs, each once. A note that not every run printed is prefixed with the runs
 * that did ("runs 1, 3: …"), so per-run values (two runs with 1 AOF rewrite, one with 2) stay
 * readable instead of collapsing into a list that hides which run said what.
 */
export function mergeNotes(outputs: Pick<RunOutput, 'notes'>[]): string[] {
  const byNote = new Map<string, number[]>();
  outputs.forEach((o, i) => {
    for (const note of new Set(o.notes ?? [])) byNote.set(note, [...(byNote.get(note) ?? []), i + 1]);
  });
  return [...byNote].map(([note, runs]) =>
    runs.length === outputs.length ? note : `${runs.length === 1 ? 'run' : 'runs'} ${runs.join(', ')}: ${note}`,
  );
}

function stripFigures(o: RunOutput): Omit<RunOutput, 'figures'> {
  const { figures: _figures, ...rest } = o;
  return rest;
}
