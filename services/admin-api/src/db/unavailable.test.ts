import { describe, expect, it, vi } from 'vitest';
import type { Logger } from '@pga/logger';
import { databaseUnavailable, isPostgresUnavailable, logDatabaseUnavailable } from './unavailable';

const pgError = (code: string) => Object.assign(new Error(code), { code });

describe('isPostgresUnavailable', () => {
  it('only what says PostgreSQL cannot serve now, not what can fail the same way every time', () => {
    const unavailable = [
      '08006',
      '08001',
      '57P01',
      '57P02',
      '57P03',
      '57P05',
      '53100',
      '53300',
      '25006',
      'ECONNREFUSED',
      'EAI_AGAIN',
    ];
    // A statement timeout, serialisation failure, deadlock, lock timeout, out of shared memory, a configured limit.
    const bugs = ['57014', '40001', '40P01', '55P03', '53200', '53400', '25P03', '23505', 'XX000'];
    expect(unavailable.filter((c) => !isPostgresUnavailable(pgError(c)))).toEqual([]);
    expect(bugs.filter((c) => isPostgresUnavailable(pgError(c)))).toEqual([]);
    expect(isPostgresUnavailable(new Error('Connection terminated unexpectedly'))).toBe(true);
    expect(isPostgresUnavailable(new TypeError("Cannot read properties of undefined (reading 'rows')"))).toBe(false);
    expect(databaseUnavailable(pgError('57014'))).toBeUndefined();
  });

  it('PostgreSQL 15/16 refusing connections with XX000 "could not write init file" (a full disk) is a 503, other XX000 a 500', () => {
    const initFile = Object.assign(new Error('could not write init file'), {
      code: 'XX000',
      severity: 'FATAL',
      file: 'relcache.c',
      routine: 'write_item',
    });
    expect(databaseUnavailable(initFile)?.message).toBe(
      'PostgreSQL cannot write to its data directory (disk full?); try again shortly',
    );
    const bug = Object.assign(new Error('cache lookup failed for type 0'), { code: 'XX000', file: 'format_type.c' });
    expect(databaseUnavailable(bug)).toBeUndefined();
  });
});

describe('logDatabaseUnavailable', () => {
  it('logs one line a minute per reason, with how many 503s went unlogged since the previous one', () => {
    const warn = vi.fn();
    const logger = { warn } as unknown as Logger;
    const t0 = 1_000_000;
    const now = vi.spyOn(Date, 'now');
    try {
      for (const [at, code] of [
        [0, '53100'],
        [1_000, '53100'],
        [2_000, '53100'],
        [3_000, '08006'],
        [61_000, '53100'],
      ] as const) {
        now.mockReturnValue(t0 + at);
        logDatabaseUnavailable(logger, pgError(code), 'groups.create');
      }
    } finally {
      now.mockRestore();
    }
    expect(warn.mock.calls.map((c) => [c[0].sqlstate, c[0].suppressed])).toEqual([
      ['53100', 0],
      ['08006', 0],
      ['53100', 2],
    ]);
  });
});
