import { describe, expect, it } from 'vitest';
import { isTransientPgError } from './pg-errors';

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
