import { describe, expect, it } from 'vitest';
import { LatencyRecorder, spectrum } from './latency-recorder';

describe('LatencyRecorder', () => {
  it('reports HDR percentiles in milliseconds within 0.1 %', () => {
    const rec = new LatencyRecorder(0);
    for (let i = 1; i <= 1000; i++) rec.recordOk(i, i / 10); // 0.1 … 100 ms
    const s = rec.summary();
    expect(s.count).toBe(1000);
    expect(s.p50).toBeCloseTo(50, 1);
    expect(s.p99).toBeCloseTo(99, 1);
    expect(s.max).toBeCloseTo(100, 1);
    expect(spectrum(rec.total).at(-1)!.ms).toBeCloseTo(100, 1);
    rec.destroy();
  });

  it('keeps one timeline point per second and bins that add up to the successes', () => {
    const rec = new LatencyRecorder(1000);
    rec.recordOk(1100, 2);
    rec.recordOk(1900, 4);
    rec.recordOk(3500, 400);
    rec.recordError(3600, '503');
    const t = rec.timeline();
    expect(t.map((p) => [p.t, p.ok, p.errors])).toEqual([
      [0, 2, 0],
      [1, 0, 0],
      [2, 1, 1],
    ]);
    expect(rec.histogramBins().reduce((a, b) => a + b.count, 0)).toBe(3);
    expect(Object.fromEntries(rec.errorsByStatus)).toEqual({ '503': 1 });
    rec.destroy();
  });
});
