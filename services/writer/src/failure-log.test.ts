import { describe, expect, it, vi } from 'vitest';
import { createLogger } from '@pga/logger';
import { createFailureLog } from './failure-log';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({
    name: 't',
    level: 'info',
    destination: { write: (l: string) => void lines.push(JSON.parse(l)) },
  });
  return { logger, lines };
}

describe('failure log', () => {
  it('logs an error once with its stack, counts its repeats and says how many when the minute is up', () => {
    vi.useFakeTimers();
    try {
      const { logger, lines } = capture();
      const log = createFailureLog(logger, 60_000);
      const revoked = Object.assign(new Error('permission denied for table collector_metrics'), { code: '42501' });
      for (let i = 0; i < 1000; i++) log.report('warn', revoked, { jobId: String(i) }, 'push job failed');
      log.report('warn', new Error('another error'), { jobId: 'x' }, 'push job failed');
      expect(lines).toHaveLength(2);
      expect(lines[0]).toMatchObject({
        jobId: '0',
        msg: 'push job failed',
        err: { stack: expect.stringContaining('permission denied') },
      });
      vi.advanceTimersByTime(60_000);
      expect(lines).toHaveLength(3);
      expect(lines[2]).toMatchObject({ repeats: 999, msg: 'push job failed: 999 more times in 60 s with the same error' });
      // A new minute: the stack again, once.
      log.report('warn', revoked, { jobId: '1001' }, 'push job failed');
      expect(lines).toHaveLength(4);
      expect(lines[3]).toMatchObject({ jobId: '1001', err: { stack: expect.any(String) } });
    } finally {
      vi.useRealTimers();
    }
  });

  it('writes a dead letter each time (its job id matters), with the stack only the first time; close says what is still counted', () => {
    const { logger, lines } = capture();
    const log = createFailureLog(logger, 60_000);
    const err = new Error('collector c8 is blocked');
    for (let i = 0; i < 3; i++) log.report('error', err, { jobId: String(i) }, 'dead-lettered', { always: true });
    log.report('warn', err, { jobId: 'a' }, 'failed');
    log.report('warn', err, { jobId: 'b' }, 'failed');
    expect(lines.map((l) => [l.jobId, typeof l.err])).toEqual([
      ['0', 'object'],
      ['1', 'string'],
      ['2', 'string'],
      ['a', 'object'],
    ]);
    log.close();
    expect(lines.at(-1)).toMatchObject({ repeats: 1, msg: 'failed: 1 more time in 60 s with the same error' });
  });
});
