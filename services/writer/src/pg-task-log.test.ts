import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { createOutageLog } from '@pga/logger';
import { createPgTaskLog } from './pg-task-log';

function capture() {
  const lines: { level: number; msg: string; [k: string]: unknown }[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line) lines.push(JSON.parse(line));
      done();
    },
  });
  return { logger: pino({ level: 'info' }, stream), lines };
}

const pgError = (code: string, message: string) => Object.assign(new Error(message), { code, where: 'SQL statement "…"' });
const diskFull = () => pgError('53100', 'could not extend file "base/1/2": No space left on device');

describe('createPgTaskLog', () => {
  it('a task failing for minutes: one line as it starts (the error in full), one a minute, one when it succeeds', () => {
    const { logger, lines } = capture();
    let t = 0;
    const log = createPgTaskLog(logger, createOutageLog(logger, 'PostgreSQL', { now: () => t }), { now: () => t });
    // The rollup fold every 5 s and the heartbeat flush every second, for 130 s.
    for (; t <= 130_000; t += 1000) {
      if (t % 5000 === 0) log.failed('maintenance job rollup', diskFull(), 'maintenance job failed');
      log.failed('heartbeat flush', diskFull(), 'heartbeat flush failed');
    }
    log.succeeded('maintenance job rollup');
    log.succeeded('maintenance job rollup');
    expect(lines.map((l) => [l.level, l.msg])).toEqual([
      [
        40,
        'maintenance job rollup failed: PostgreSQL is out of disk space (disk full) (SQLSTATE 53100): could not extend file "base/1/2": No space left on device; it is retried as before, and the same failure is summarised once a minute until it succeeds',
      ],
      [40, expect.stringMatching(/^heartbeat flush failed: PostgreSQL is out of disk space/)],
      [40, 'maintenance job rollup still failing after 60 s: PostgreSQL is out of disk space (disk full) (13 failures)'],
      [40, 'heartbeat flush still failing after 60 s: PostgreSQL is out of disk space (disk full) (61 failures)'],
      [40, 'maintenance job rollup still failing after 120 s: PostgreSQL is out of disk space (disk full) (25 failures)'],
      [40, 'heartbeat flush still failing after 120 s: PostgreSQL is out of disk space (disk full) (121 failures)'],
      [
        30,
        'maintenance job rollup succeeded again after 131 s of failing: PostgreSQL is out of disk space (disk full) (27 failures)',
      ],
    ]);
    // The first line keeps the error whole (stack, SQLSTATE, the statement's context); the others its text.
    expect(lines[0]).toMatchObject({
      task: 'maintenance job rollup',
      sqlstate: '53100',
      err: { code: '53100', where: 'SQL statement "…"' },
    });
    expect((lines[0]!.err as { stack?: string }).stack).toMatch(/^Error: could not extend file/);
    expect(lines[2]).toMatchObject({
      err: 'could not extend file "base/1/2": No space left on device',
      failures: 13,
      seconds: 60,
    });
    expect(log.failing('maintenance job rollup')).toBe(false);
    expect(log.failing('heartbeat flush')).toBe(true);
  });

  it('each reason of a task is its own line; PostgreSQL away goes to the outage log; other errors are logged as they come', () => {
    const { logger, lines } = capture();
    const log = createPgTaskLog(logger, createOutageLog(logger, 'PostgreSQL'));
    log.failed('maintenance job sweep', diskFull(), 'maintenance job failed');
    log.failed('maintenance job sweep', pgError('53300', 'sorry, too many clients already'), 'maintenance job failed');
    log.failed('maintenance job sweep', diskFull(), 'maintenance job failed');
    // A pool that found no connection in time (no SQLSTATE).
    log.failed('maintenance job sweep', new Error('timeout exceeded when trying to connect'), 'maintenance job failed');
    log.failed('maintenance job sweep', new Error('timeout exceeded when trying to connect'), 'maintenance job failed');
    for (let i = 0; i < 3; i++)
      log.failed(
        'maintenance job sweep',
        Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }),
        'maintenance job failed',
        { job: 'sweep' },
      );
    log.failed('maintenance job sweep', pgError('42501', 'permission denied for table collectors'), 'maintenance job failed', {
      job: 'sweep',
    });
    log.failed('maintenance job sweep', pgError('42501', 'permission denied for table collectors'), 'maintenance job failed', {
      job: 'sweep',
    });
    expect(lines.map((l) => l.msg.replace(/: (could|sorry|timeout|connect|it is).*/, ''))).toEqual([
      'maintenance job sweep failed: PostgreSQL is out of disk space (disk full) (SQLSTATE 53100)',
      'maintenance job sweep failed: PostgreSQL has no free connection (too many connections) (SQLSTATE 53300)',
      'maintenance job sweep failed: PostgreSQL is unavailable',
      'PostgreSQL unreachable',
      'maintenance job failed',
      'maintenance job failed',
    ]);
    expect(lines[4]).toMatchObject({ job: 'sweep', err: { code: '42501' } });
    log.succeeded('maintenance job sweep');
    expect(lines.slice(6).map((l) => l.msg.replace(/ after .* of failing/, ''))).toEqual([
      'maintenance job sweep succeeded again: PostgreSQL is out of disk space (disk full) (2 failures)',
      'maintenance job sweep succeeded again: PostgreSQL has no free connection (too many connections) (1 failure)',
      'maintenance job sweep succeeded again: PostgreSQL is unavailable (2 failures)',
    ]);
  });
});
