import { describe, expect, it } from 'vitest';
import { SslCertificateSchema, containsPem } from './field-schemas';

const CERT = '-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUb3B0aW9uYWw=\n-----END CERTIFICATE-----';

describe('SslCertificateSchema', () => {
  it('takes a PEM certificate as text or base64, and nothing else', () => {
    expect(SslCertificateSchema.parse(`  ${CERT}\n`)).toBe(CERT);
    expect(SslCertificateSchema.parse(Buffer.from(CERT).toString('base64'))).toBe(CERT);
    expect(SslCertificateSchema.parse(`subject=CN = ca\n${CERT}\ntrailer`)).toContain(CERT);
    for (const bad of [
      'nope',
      '-----BEGIN CERTIFICATE-----\nabc',
      '-----END X-----\n-----BEGIN X-----',
      '-----BEGIN X----------END X-----',
    ])
      expect(SslCertificateSchema.safeParse(bad).success, bad).toBe(false);
  });

  it('finds a PEM block exactly where the backtracking regex it replaces did', () => {
    const OLD = /-----BEGIN [A-Z0-9 ]+-----[\s\S]+-----END [A-Z0-9 ]+-----/;
    const pieces = ['-----BEGIN ', '-----END ', '-----', '-', 'A', '1', ' ', '\n', 'x'];
    let seed = 42;
    const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31);
    for (let i = 0; i < 20_000; i++) {
      const text = Array.from({ length: next() % 12 }, () => pieces[next() % pieces.length]).join('');
      expect(containsPem(text), JSON.stringify(text)).toBe(OLD.test(text));
    }
  });

  it('refuses 64 KiB of BEGIN lines without an END (0.3 s each with the backtracking regex; two linear searches now)', () => {
    const text = '-----BEGIN A-----'.repeat(3850);
    const base64 = Buffer.from('-----BEGIN A-----'.repeat(2880)).toString('base64');
    expect(SslCertificateSchema.safeParse(text).success).toBe(false);
    expect(SslCertificateSchema.safeParse(base64).success).toBe(false);
  });
});
