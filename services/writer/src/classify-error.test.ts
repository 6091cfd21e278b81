import { describe, expect, it } from 'vitest';
import { classifyError, connectFailure } from './classify-error';
import { copyEscape } from './copy-rows';
import { parseSeen } from './heartbeat-flush';
import { PoisonPushError } from './prepare-push';

const pgError = (code: string) => Object.assign(new Error('x'), { code });

describe('classifyError', () => {
  it('retries by SQLSTATE and on connection failures without one', () => {
    for (const code of ['08006', '40001', '40P01', '57P01', '53300', '55P03', 'ECONNREFUSED']) {
      expect(classifyError(pgError(code)), code).toBe('transient');
    }
    expect(classifyError(new Error('Connection terminated unexpectedly'))).toBe('transient');
  });
  it('retries a row refused by the bound of the DEFAULT partition (its day attached during the COPY), not a CHECK constraint', () => {
    const race = Object.assign(new Error('new row for relation "collector_metrics_default" violates partition constraint'), {
      code: '23514',
      table: 'collector_metrics_default',
    });
    expect(classifyError(race)).toBe('transient');
    expect(
      classifyError(Object.assign(new Error('x'), { code: '23514', table: 'collector_metrics_default', constraint: 'c' })),
    ).toBe('poison');
    expect(classifyError(Object.assign(new Error('x'), { code: '23514', table: 'collector_metrics_p20261207' }))).toBe('poison');
  });
  it('never takes an error opening the connection for the data (a rejected startup option is 22023)', () => {
    expect(
      classifyError(connectFailure(Object.assign(new Error('invalid value for parameter "TimeZone"'), { code: '22023' }))),
    ).toBe('fatal');
    expect(classifyError(connectFailure(Object.assign(new Error('x'), { code: '57P03' })))).toBe('transient');
  });
  it('treats data errors and our own checks as poison, other server errors as fatal', () => {
    for (const code of ['22P02', '22P05', '23502', '54000']) expect(classifyError(pgError(code)), code).toBe('poison');
    expect(classifyError(new PoisonPushError('bad'))).toBe('poison');
    for (const code of ['42P01', '42501', 'XX000']) expect(classifyError(pgError(code)), code).toBe('fatal');
    // A jsonb row too large for the parser's palloc (measured on PostgreSQL 15 in a COPY).
    const alloc = Object.assign(new Error('invalid memory alloc request size 1073741824'), { code: 'XX000' });
    expect(classifyError(alloc)).toBe('poison');
    // The same from a server speaking another language: told by its source file.
    const localised = Object.assign(new Error('tamaño de petición de asignación de memoria no válido'), {
      code: 'XX000',
      file: 'mcxt.c',
    });
    expect(classifyError(localised)).toBe('poison');
  });
});

describe('copyEscape', () => {
  it('escapes exactly what COPY text format needs', () => {
    expect(copyEscape('{"a":"x\\ny"}\t\r\n')).toBe('{"a":"x\\\\ny"}\\t\\r\\n');
    const plain = '{"queryid":-9223372036854775808}';
    expect(copyEscape(plain)).toBe(plain);
  });
});

describe('parseSeen', () => {
  it('reads ISO strings, epoch milliseconds and epoch seconds', () => {
    expect(parseSeen('2026-11-27T03:06:45.000Z')?.toISOString()).toBe('2026-11-27T03:06:45.000Z');
    expect(parseSeen('1795788863461')?.getTime()).toBe(1795788863461);
    expect(parseSeen('1795788863')?.getTime()).toBe(1795788863000);
    expect(parseSeen('nonsense')).toBeNull();
    expect(parseSeen(undefined)).toBeNull();
  });
  it('reads an ISO string without an offset as UTC, not in the time zone of the writer (TZ)', () => {
    const tz = process.env.TZ;
    process.env.TZ = 'Asia/Kolkata';
    try {
      expect(parseSeen('2026-11-27T03:06:45.000')?.toISOString()).toBe('2026-11-27T03:06:45.000Z');
      expect(parseSeen('2026-11-27T03:06')?.toISOString()).toBe('2026-11-27T03:06:00.000Z');
      expect(parseSeen('2026-11-27T03:06:45+05:30')?.toISOString()).toBe('2026-11-26T21:36:45.000Z');
    } finally {
      if (tz === undefined) delete process.env.TZ;
      else process.env.TZ = tz;
    }
  });
});
