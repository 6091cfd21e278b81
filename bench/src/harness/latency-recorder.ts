import { build, type Histogram } from 'hdr-histogram-js';

/** Latencies are recorded in microseconds, 1 µs … 120 s, 3 significant digits. */
const LOWEST_US = 1;
const HIGHEST_US = 120_000_000;

export function createHistogram(): Histogram {
  return build({
    lowestDiscernibleValue: LOWEST_US,
    highestTrackableValue: HIGHEST_US,
    numberOfSignificantValueDigits: 3,
    // Plain 32-bit counts (~230 KB per histogram): the packed layout costs the generator several
    // µs per recorded value, which on a 2-core machine is taken from the system under test.
    bitBucketSize: 32,
    useWebAssembly: false,
  });
}

/** Percentiles every latency table prints. */
export const PERCENTILES = [50, 90, 99, 99.9] as const;

export interface LatencySummary {
  count: number;
  /** Milliseconds. */
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
}

export function summarize(h: Histogram): LatencySummary {
  const ms = (us: number) => us / 1000;
  if (h.totalCount === 0) return { count: 0, p50: NaN, p90: NaN, p99: NaN, p999: NaN, max: NaN, mean: NaN };
  return {
    count: h.totalCount,
    p50: ms(h.getValueAtPercentile(50)),
    p90: ms(h.getValueAtPercentile(90)),
    p99: ms(h.getValueAtPercentile(99)),
    p999: ms(h.getValueAtPercentile(99.9)),
    max: ms(h.maxValue),
    mean: ms(h.mean),
  };
}

/** One point of a percentile spectrum: the latency (ms) at `percentile`. */
export interface SpectrumPoint {
  percentile: number;
  ms: number;
}

/**
 * The HDR "percentile spectrum" (latency by percentile on a 1/(1-p) axis), the chart that shows
 * tail behaviour honestly: 0, 50, 75, 87.5, … up to 99.999 and the max.
 */
export function spectrum(h: Histogram): SpectrumPoint[] {
  if (h.totalCount === 0) return [];
  const points: SpectrumPoint[] = [];
  for (let k = 0; k <= 16; k++) {
    const p = 100 * (1 - 1 / 2 ** k);
    if (p > 99.999) break;
    points.push({ percentile: p, ms: h.getValueAtPercentile(p) / 1000 });
  }
  points.push({ percentile: 100, ms: h.maxValue / 1000 });
  return points;
}

/** One second of a run: answered requests and their latency percentiles. */
export interface TimelinePoint {
  /** Seconds since the recorder started. */
  t: number;
  /** Successful answers in that second. */
  ok: number;
  /** Error answers (any non-success status or socket error) in that second. */
  errors: number;
  p50: number;
  p99: number;
}

/** Log-spaced latency bins (ms) with counts: the bars of the latency histogram chart. */
export interface LatencyBin {
  fromMs: number;
  toMs: number;
  count: number;
}

const BIN_FIRST_MS = 0.05;
const BINS_PER_DECADE = 8;
const BIN_COUNT = 8 * BINS_PER_DECADE; // 0.05 ms … 5,000 s: covers everything the histogram can hold

/**
 * Records request latencies into an HDR histogram (the figures), per-second histograms (the
 * latency-over-time chart) and log bins (the histogram chart).
 */
export class LatencyRecorder {
  readonly total = createHistogram();
  private readonly perSecond: { ok: number; errors: number; h: Histogram }[] = [];
  private readonly bins = new Float64Array(BIN_COUNT);
  readonly errorsByStatus = new Map<string, number>();
  ok = 0;
  errors = 0;

  constructor(private readonly startMs: number) {}

  private second(atMs: number) {
    const idx = Math.max(0, Math.floor((atMs - this.startMs) / 1000));
    while (this.perSecond.length <= idx) this.perSecond.push({ ok: 0, errors: 0, h: createHistogram() });
    return this.perSecond[idx]!;
  }

  /** A successful answer at `atMs` (performance.now() clock) that took `latencyMs`. */
  recordOk(atMs: number, latencyMs: number): void {
    const us = Math.min(HIGHEST_US, Math.max(LOWEST_US, Math.round(latencyMs * 1000)));
    this.total.recordValue(us);
    const s = this.second(atMs);
    s.ok++;
    s.h.recordValue(us);
    const bin = Math.floor(Math.log10(Math.max(latencyMs, BIN_FIRST_MS) / BIN_FIRST_MS) * BINS_PER_DECADE);
    this.bins[Math.min(BIN_COUNT - 1, bin)]! += 1;
    this.ok++;
  }

  /** A failed answer: `status` is the HTTP status or an error name such as "ECONNRESET". */
  recordError(atMs: number, status: string): void {
    this.second(atMs).errors++;
    this.errors++;
    this.errorsByStatus.set(status, (this.errorsByStatus.get(status) ?? 0) + 1);
  }

  timeline(offsetS = 0): TimelinePoint[] {
    return this.perSecond.map((s, i) => ({
      t: offsetS + i,
      ok: s.ok,
      errors: s.errors,
      p50: s.h.totalCount ? s.h.getValueAtPercentile(50) / 1000 : NaN,
      p99: s.h.totalCount ? s.h.getValueAtPercentile(99) / 1000 : NaN,
    }));
  }

  histogramBins(): LatencyBin[] {
    const out: LatencyBin[] = [];
    let first = this.bins.findIndex((c) => c > 0);
    let last = BIN_COUNT - 1;
    while (last >= 0 && this.bins[last] === 0) last--;
    if (first < 0) return out;
    first = Math.max(0, first);
    for (let i = first; i <= last; i++) {
      out.push({
        fromMs: BIN_FIRST_MS * 10 ** (i / BINS_PER_DECADE),
        toMs: BIN_FIRST_MS * 10 ** ((i + 1) / BINS_PER_DECADE),
        count: this.bins[i]!,
      });
    }
    return out;
  }

  summary(): LatencySummary {
    return summarize(this.total);
  }

  destroy(): void {
    this.total.destroy();
    for (const s of this.perSecond) s.h.destroy();
  }
}
