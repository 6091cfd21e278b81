import { describe, expect, it } from 'vitest';
import { isDatabaseUnavailable, isTransientPgError } from './pg-errors';

const pgError = (code: string) => Object.assign(new Error(code), { code });

describe('isTransientPgError', () => {
  it('retries what passes (connections, failover, locks, cancels), not what a retry repeats', () => {
    const transient = ['08006', '08001', '53300', '40001', '40P01', '55P03', '57P01', '57014', '25006', '25P03', 'ECONNRESET'];
    const permanent = ['22021', '22P02', '23505', '42P01', '54000', 'XX000'];
    expect(transient.filter((c) => !isTransientPgError(pgError(c)))).toEqual([]);
    expect(permanent.filter((c) => isTransientPgError(pgError(c)))).toEqual([]);
    expect(isTransientPgError(new Error('no code'))).toBe(false);
  });
});

describe('isDatabaseUnavailable', () => {
  it("adds node-postgres's connection errors that carry no SQLSTATE, and nothing else without one", () => {
    for (const message of [
      'Connection terminated unexpectedly',
      'Connection terminated due to connection timeout',
      'timeout exceeded when trying to connect',
      'Client has encountered a connection error and is not queryable',
    ])
      expect({ message, unavailable: isDatabaseUnavailable(new Error(message)) }).toEqual({ message, unavailable: true });
    expect(isDatabaseUnavailable(pgError('57P01'))).toBe(true);
    expect(isDatabaseUnavailable(new TypeError("Cannot read properties of undefined (reading 'rows')"))).toBe(false);
    // A server error with a SQLSTATE is judged by it, whatever its text says.
    expect(isDatabaseUnavailable(Object.assign(new Error('Connection terminated by trigger'), { code: 'P0001' }))).toBe(false);
  });
});
