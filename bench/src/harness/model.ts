import type { LatencyBin, SpectrumPoint, TimelinePoint } from './latency-recorder';
import type { Spread } from './stats';

/** Which direction of change is an improvement. */
export type Better = 'higher' | 'lower' | 'none';

/** The load generator's own consumption while a figure was measured. */
export interface GeneratorUsage {
  /** CPU the generator process used, in cores (1 = one core fully busy), over the window. */
  cpuCores: number;
  /** Event-loop utilisation of the generator's main thread, 0–1. */
  elu: number;
  /** The generator itself was the bottleneck (its event loop ≥ 90 % busy): the figure is a lower bound. */
  saturated: boolean;
  /**
   * How late the generator's own event loop ran (p99 and max, ms): a request due while it was
   * stalled is sent late and its wait counts as latency, so a tail this size is the generator's.
   */
  loopDelayP99Ms?: number;
  loopDelayMaxMs?: number;
}

/** One figure measured in one run. */
export interface Measurement {
  value: number;
  generator?: GeneratorUsage;
}

export interface FigureDef {
  key: string;
  label: string;
  unit: string;
  better: Better;
  /** The target, as text (e.g. "≤ 10 ms"). */
  target?: string;
}

/** A figure across runs. */
export interface FigureResult extends FigureDef, Spread {
  runs: number[];
  /** Generator CPU (cores) beside the figure: median and max over runs; undefined when not a load figure. */
  generatorCpu?: Spread;
  /** Runs in which the generator was saturated while measuring this figure. */
  generatorSaturatedRuns: number;
}

/** What one run of a scenario hands back. */
export interface RunOutput {
  figures: Record<string, Measurement>;
  /** Per-second throughput/latency of the run's load phases, labelled (e.g. "closed-loop"). */
  timelines?: Record<string, TimelinePoint[]>;
  spectra?: Record<string, SpectrumPoint[]>;
  bins?: Record<string, LatencyBin[]>;
  /** Errors by HTTP status / socket error, summed over the run. */
  errors?: Record<string, number>;
  /** CPU (cores) of each part of the system under test during the main load window. */
  components?: Record<string, number>;
  notes?: string[];
  /**
   * Why this run failed although it completed (an audit that found lost or duplicated pushes, a
   * queue that never drained): the scenario is then reported as failed and the bench exits 1.
   */
  failures?: string[];
}

export interface ScenarioResult {
  name: string;
  goal: string;
  status: 'ok' | 'skipped' | 'failed';
  reason?: string;
  durationMs: number;
  figures: FigureResult[];
  /** Per-run charts data (index = run). */
  runs: Omit<RunOutput, 'figures'>[];
  notes: string[];
}

export interface MachineInfo {
  hostname: string;
  cpuModel: string;
  cores: number;
  memoryMiB: number;
  kernel: string;
  node: string;
  postgres: string;
  redis: string;
  gitCommit: string;
  /** 1/5/15-minute load averages just before the bench started anything. */
  loadBefore: number[];
  loadAfter?: number[];
  /** CPU (cores, averaged over the whole bench) used by processes the bench did not start. */
  foreignCpuCores?: number;
}

export interface BenchResult {
  schema: 1;
  startedAt: string;
  finishedAt: string;
  mode: 'quick' | 'full';
  runsPerScenario: number;
  argv: string[];
  machine: MachineInfo;
  tolerancePct: number;
  scenarios: ScenarioResult[];
  /** Derived figures (e2e / copy-limit, e2e / design-baseline), computed from this same run. */
  ratios: FigureResult[];
}
