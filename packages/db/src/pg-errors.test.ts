import { describe, expect, it } from 'vitest';
import {
  isDatabaseUnavailable,
  isDiskFull,
  isLostConnection,
  isTransientPgError,
  PG_ERROR_KINDS,
  pgErrorKind,
  unavailableReason,
} from './pg-errors';

const pgError = (code: string) => Object.assign(new Error(code), { code });
/** An error as node-postgres gives it: the server's message, SQLSTATE, source file and function. */
const serverError = (code: string, message: string, file?: string, routine?: string) =>
  Object.assign(new Error(message), { code, severity: 'FATAL', ...(file ? { file, routine } : {}) });
/** PostgreSQL 15/16 (relcache.c, write_item: `elog(FATAL, ...)`) on a full disk, at connection start. */
const initFileNotWritten = () => serverError('XX000', 'could not write init file', 'relcache.c', 'write_item');

describe('isTransientPgError', () => {
  it('retries what passes (connections, failover, locks, cancels), not what a retry repeats', () => {
    const transient = ['08006', '08001', '53300', '40001', '40P01', '55P03', '57P01', '57014', '25006', '25P03', 'ECONNRESET'];
    const permanent = ['22021', '22P02', '23505', '42P01', '54000', 'XX000'];
    expect(transient.filter((c) => !isTransientPgError(pgError(c)))).toEqual([]);
    expect(permanent.filter((c) => isTransientPgError(pgError(c)))).toEqual([]);
    expect(isTransientPgError(new Error('no code'))).toBe(false);
  });

  it('PostgreSQL 14+ closing an idle session (57P05) is retried; the database dropped, class 58 and XX are not', () => {
    expect(isTransientPgError(pgError('57P05'))).toBe(true);
    // 57P04 database dropped; 58030 EIO, 58P01 ENOENT, 58P02 EEXIST (errcode_for_file_access); XX001/XX002 corruption.
    const machineOrBug = ['57P04', '58000', '58030', '58P01', '58P02', 'XX000', 'XX001', 'XX002'];
    expect(machineOrBug.filter((c) => isTransientPgError(pgError(c)))).toEqual([]);
  });
});

describe('PostgreSQL 15/16\'s "could not write init file" (XX000 of a full disk at connection start)', () => {
  it('is a full disk, told by relcache.c and its function (any lc_messages), or by its English text', () => {
    const translated = serverError('XX000', 'konnte Init-Datei nicht schreiben', 'relcache.c', 'write_relcache_init_file');
    const noFields = serverError('XX000', 'could not write init file');
    for (const err of [initFileNotWritten(), translated, noFields]) {
      expect(isDiskFull(err), err.message).toBe(true);
      expect(isTransientPgError(err), err.message).toBe(true);
      expect(isDatabaseUnavailable(err), err.message).toBe(true);
      expect(pgErrorKind(err), err.message).toBe('disk_full');
      expect(unavailableReason(err), err.message).toBe('PostgreSQL cannot write to its data directory (disk full?)');
    }
    expect(isDiskFull(pgError('53100'))).toBe(true);
    // Any other internal error stays one: another function of relcache.c, the same text from elsewhere.
    for (const err of [
      serverError('XX000', 'could not write init file', 'relcache.c', 'RelationBuildDesc'),
      serverError('XX000', 'could not write init file', 'pl_exec.c', 'exec_stmt_raise'),
      serverError('XX000', 'cache lookup failed for relation 16384', 'relcache.c', 'RelationReloadIndexInfo'),
      serverError('58030', 'could not write init file', 'relcache.c', 'write_item'),
    ]) {
      expect(isDiskFull(err), err.message).toBe(false);
      expect(isDatabaseUnavailable(err), err.message).toBe(false);
    }
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

describe('pgErrorKind', () => {
  it('sorts PostgreSQL errors into a few kinds, and says nothing of an error that is not one', () => {
    const kinds = Object.fromEntries(
      [
        '53100',
        '53200',
        '53300',
        '08006',
        '57P01',
        '57P03',
        'ECONNREFUSED',
        'EAI_AGAIN',
        'SELF_SIGNED_CERT_IN_CHAIN',
        '25006',
        '57014',
        '55P03',
        '25P03',
        '40001',
        '40P01',
        '42501',
        '22P02',
        'P0001',
        'XX000',
        '57P05',
        '57P04',
        '58030',
        '58P01',
        'ERR_STREAM_PREMATURE_CLOSE',
      ].map((code) => [code, pgErrorKind(pgError(code))]),
    );
    expect(kinds).toEqual({
      '53100': 'disk_full',
      '53200': 'out_of_resources',
      '53300': 'out_of_resources',
      '08006': 'unreachable',
      '57P01': 'unreachable',
      '57P03': 'unreachable',
      ECONNREFUSED: 'unreachable',
      EAI_AGAIN: 'unreachable',
      SELF_SIGNED_CERT_IN_CHAIN: 'unreachable',
      '25006': 'read_only',
      '57014': 'timeout',
      '55P03': 'timeout',
      '25P03': 'timeout',
      '40001': 'conflict',
      '40P01': 'conflict',
      '42501': 'other',
      '22P02': 'other',
      P0001: 'other',
      XX000: 'other',
      '57P05': 'timeout',
      '57P04': 'other',
      '58030': 'other',
      '58P01': 'other',
      ERR_STREAM_PREMATURE_CLOSE: undefined,
    });
    expect(Object.values(kinds).every((k) => k === undefined || PG_ERROR_KINDS.includes(k))).toBe(true);
    expect(pgErrorKind(new Error('Connection terminated unexpectedly'))).toBe('unreachable');
    expect(pgErrorKind(new Error('timeout exceeded when trying to connect'))).toBe('timeout');
    expect(pgErrorKind(new TypeError("Cannot read properties of undefined (reading 'rows')"))).toBeUndefined();
    expect(pgErrorKind('53100')).toBeUndefined();
  });
});

describe('isLostConnection', () => {
  it('a socket/DNS error or a node-postgres connection error without a SQLSTATE, never a SQLSTATE', () => {
    expect(isLostConnection(pgError('ECONNREFUSED'))).toBe(true);
    expect(isLostConnection(pgError('EAI_AGAIN'))).toBe(true);
    expect(isLostConnection(new Error('Connection terminated unexpectedly'))).toBe(true);
    expect(isLostConnection(pgError('08006'))).toBe(false);
    expect(isLostConnection(Object.assign(new Error('Connection terminated by trigger'), { code: 'P0001' }))).toBe(false);
    expect(isLostConnection(new Error('boom'))).toBe(false);
  });
});
