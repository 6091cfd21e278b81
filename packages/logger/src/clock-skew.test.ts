import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { ClockSkewWatch } from './clock-skew';

function capture() {
  const lines: { level: number; msg: string; offset_ms?: number }[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line) lines.push(JSON.parse(line));
      done();
    },
  });
  return { logger: pino({ level: 'info' }, stream), lines };
}

describe('ClockSkewWatch', () => {
  it("reads the offset as the server's time minus the round trip's midpoint", () => {
    const { logger } = capture();
    const watch = new ClockSkewWatch(logger, 'Redis');
    expect(watch.offsetMs).toBeUndefined();
    expect(watch.offsetSeconds).toBeUndefined();
    // sent at 1,000, answered at 1,040: the server's 1,020 is no offset at all
    watch.observe(1_000, 1_020, 1_040);
    expect(watch.offsetMs).toBe(0);
    // this host 7.5 s behind the server
    watch.observe(10_000, 17_520, 10_040);
    expect(watch.offsetMs).toBe(7_500);
    expect(watch.offsetSeconds).toBe(7.5);
    // this host 30 s ahead
    watch.observe(50_000, 20_010, 50_020);
    expect(watch.offsetSeconds).toBe(-30);
  });

  it('skips readings whose round trip says too little (slower than 250 ms), or nonsense', () => {
    const { logger } = capture();
    const watch = new ClockSkewWatch(logger, 'PostgreSQL');
    watch.observe(1_000, 1_000, 1_200);
    watch.observe(5_000, 60_000, 5_300);
    watch.observe(5_000, Number.NaN, 5_010);
    watch.observe(5_010, 5_000, 5_000);
    expect(watch.offsetMs).toBe(-100);
  });

  it('logs once when the offset passes 5 s, once when it is back, nothing in between', () => {
    const { logger, lines } = capture();
    const watch = new ClockSkewWatch(logger, 'Redis');
    watch.observe(0, 4_000, 10); // 4 s: within
    watch.observe(0, 9_005, 10); // 9 s behind
    watch.observe(0, 12_005, 10);
    watch.observe(0, -6_000, 10); // 6 s ahead: still skewed, not logged again
    watch.observe(0, 105, 10); // back
    watch.observe(0, 5, 10);
    expect(lines.map((l) => [l.level, l.msg])).toEqual([
      [
        40,
        "this host's clock is 9.0 s behind Redis's: heartbeat and push times are this clock's, compared with PostgreSQL's; fix the host's time sync (NTP/chrony)",
      ],
      [30, "this host's clock agrees with Redis's again"],
    ]);
    expect(lines[0]!.offset_ms).toBe(9_000);
  });

  it('stands for the offset only while fresh: no reading for a minute is none, not 0 ("in sync")', () => {
    const { logger } = capture();
    let t = 1_000_000;
    const watch = new ClockSkewWatch(logger, 'Redis', 5_000, 60_000, () => t);
    watch.observe(0, 8_010, 20);
    expect(watch.offsetSeconds).toBe(8);
    t += 60_000;
    expect(watch.offsetSeconds).toBe(8);
    t += 1;
    expect(watch.offsetSeconds).toBeUndefined();
  });
});
