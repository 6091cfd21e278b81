import { describe, expect, it } from 'vitest';
import { createReasonThrottle } from './reason-throttle';

describe('createReasonThrottle', () => {
  it('the first occurrence of a reason at once, then one a minute per reason with the counts, until it ends', () => {
    let t = 0;
    const throttle = createReasonThrottle<string>({ now: () => t });
    const lines: string[] = [];
    const note = (key: string) => {
      const line = throttle.note(key, () => `kept from ${key}'s first at ${t}`);
      if (line?.first) lines.push(`${key} first (${line.reason.data})`);
      else if (line)
        lines.push(
          `${key} again after ${line.reason.lastLine - line.reason.since} ms: ${line.reason.count} in all, ${line.suppressed} unlogged`,
        );
    };
    // "disk" every second for 130 s; "conn" every 5 s from 10 s on.
    for (; t <= 130_000; t += 1000) {
      note('disk');
      if (t >= 10_000 && t % 5000 === 0) note('conn');
    }
    expect(throttle.active).toBe(true);
    expect(lines).toEqual([
      "disk first (kept from disk's first at 0)",
      "conn first (kept from conn's first at 10000)",
      'disk again after 60000 ms: 61 in all, 59 unlogged',
      'conn again after 60000 ms: 13 in all, 11 unlogged',
      'disk again after 120000 ms: 121 in all, 59 unlogged',
      'conn again after 120000 ms: 25 in all, 11 unlogged',
    ]);
    // Ending: every reason, first noted first, with its counts; the next occurrence is a first again.
    expect(throttle.end().map((r) => [r.data, r.since, r.count])).toEqual([
      ["kept from disk's first at 0", 0, 131],
      ["kept from conn's first at 10000", 10_000, 25],
    ]);
    expect(throttle.active).toBe(false);
    note('disk');
    expect(lines.at(-1)).toBe(`disk first (kept from disk's first at ${t})`);
  });

  it('a reason that comes back long after its last line is one line, counting what went unlogged since; `every` per call', () => {
    let t = 0;
    const throttle = createReasonThrottle({ everyMs: 1000, now: () => t });
    expect(throttle.note('a', () => undefined)).toMatchObject({ first: true });
    t = 500;
    expect(throttle.note('a', () => undefined)).toBeUndefined();
    t = 3_600_000;
    expect(throttle.note('a', () => undefined)).toMatchObject({ first: false, suppressed: 1, reason: { count: 3 } });
    t += 2000;
    expect(throttle.note('a', () => undefined, 5000)).toBeUndefined();
    t += 3000;
    expect(throttle.note('a', () => undefined, 5000)).toMatchObject({ first: false, suppressed: 1 });
  });

  it('reads Date.now at each occurrence by default (a clock a test replaces is the one used)', () => {
    const throttle = createReasonThrottle({ everyMs: 60_000 });
    const realNow = Date.now;
    try {
      Date.now = () => 1_000_000;
      expect(throttle.note('x', () => undefined)?.reason.since).toBe(1_000_000);
      Date.now = () => 1_060_000;
      expect(throttle.note('x', () => undefined)).toMatchObject({ first: false, reason: { lastLine: 1_060_000 } });
    } finally {
      Date.now = realNow;
    }
  });
});
