import { afterEach, describe, expect, it, vi } from 'vitest';
import { FreshnessProbe } from './freshness-probe';

/** Offers `count` acks spread evenly over [fromMs, toMs). */
function offer(probe: FreshnessProbe, fromMs: number, toMs: number, count: number): void {
  for (let i = 0; i < count; i++) probe.onAck(`id-${fromMs}-${i}`, fromMs + ((toMs - fromMs) * i) / count);
}

describe('FreshnessProbe sampling', () => {
  afterEach(() => vi.restoreAllMocks());

  it('spreads about perSecond samples over the whole second of an open-loop step', () => {
    // A fixed pseudo-random sequence, so the test cannot flake.
    let x = 42;
    vi.spyOn(Math, 'random').mockImplementation(() => (x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const probe = new FreshnessProbe('postgres://unused', 100);
    // 4,000 acks/s for 2 s; each half of every second is a phase of its own, to see where samples fall.
    for (const start of [0, 1000]) {
      probe.setPhase('first half', 4000);
      offer(probe, start, start + 500, 2000);
      probe.setPhase('second half', 4000);
      offer(probe, start + 500, start + 1000, 2000);
    }
    const unseen = probe.unseen();
    // Nothing polls here: every sample is still pending. 100/s × 2 s, half in each half-second.
    expect(unseen.get('first half')).toBeGreaterThan(70);
    expect(unseen.get('first half')).toBeLessThan(130);
    expect(unseen.get('second half')).toBeGreaterThan(70);
    expect(unseen.get('second half')).toBeLessThan(130);
  });

  it('keeps at most 2 × perSecond per second in a closed loop, whose rate is not known in advance', () => {
    const probe = new FreshnessProbe('postgres://unused', 100);
    probe.setPhase('closed-loop');
    offer(probe, 0, 3000, 30_000);
    const kept = probe.unseen().get('closed-loop') ?? 0;
    expect(kept).toBeGreaterThan(150);
    expect(kept).toBeLessThanOrEqual(600);
  });
});
