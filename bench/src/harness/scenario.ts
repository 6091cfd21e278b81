import type { FigureDef, RunOutput } from './model';
import type { Progress } from './progress';
import type { BenchStack } from './stack';

export type Mode = 'quick' | 'full';

export interface ScenarioContext {
  stack: BenchStack;
  mode: Mode;
  /** 1-based run number and the number of runs. */
  run: number;
  runs: number;
  progress: Progress;
  /** Status line prefix, e.g. "ingest-e2e run 2/3". */
  label: string;
  /** State shared between scenarios of one bench (collectors and their tokens, services started). */
  shared: Map<string, unknown>;
}

export interface Scenario {
  name: string;
  /** One sentence: what the scenario measures and which target it checks. */
  goal: string;
  figures: FigureDef[];
  /** Runs in `--full` or when named with `--scenario`; skipped by the quick suite (time budget). */
  fullOnly?: boolean;
  /** Why the scenario cannot run on this checkout (a service not built yet), or undefined. */
  unavailable?(): string | undefined;
  setup?(ctx: ScenarioContext): Promise<void>;
  run(ctx: ScenarioContext): Promise<RunOutput>;
  teardown?(ctx: ScenarioContext): Promise<void>;
}
