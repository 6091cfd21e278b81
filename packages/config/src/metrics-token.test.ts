import { describe, expect, it } from 'vitest';
import { loadConfig } from './load-config';
import { isLoopbackHost, metricsAuth, metricsTokenSchema, openMetricsWarningFor } from './metrics-token';

const A = 'a'.repeat(32);
const B = 'B0-._~+/'.repeat(3) + '==';

describe('METRICS_TOKEN', () => {
  it('unset or empty is no token (/metrics open); one token or a rotation list is the list', () => {
    expect(loadConfig(metricsTokenSchema, {}).METRICS_TOKEN).toEqual([]);
    expect(loadConfig(metricsTokenSchema, { METRICS_TOKEN: ' ' }).METRICS_TOKEN).toEqual([]);
    expect(loadConfig(metricsTokenSchema, { METRICS_TOKEN: A }).METRICS_TOKEN).toEqual([A]);
    expect(loadConfig(metricsTokenSchema, { METRICS_TOKEN: `${B}, ${A}` }).METRICS_TOKEN).toEqual([B, A]);
  });

  it('refuses a short token or one a Bearer header cannot carry, in one line, without showing it', () => {
    expect(() => loadConfig(metricsTokenSchema, { METRICS_TOKEN: 'short-token' })).toThrowError(
      /^invalid environment: METRICS_TOKEN: the token is 11 characters; at least 16 .*\(got "\[redacted\]"\)$/,
    );
    expect(() => loadConfig(metricsTokenSchema, { METRICS_TOKEN: `${A},has space in it 123456` })).toThrowError(
      /METRICS_TOKEN: token 2 has a character a Bearer token cannot carry/,
    );
    expect(() => loadConfig(metricsTokenSchema, { METRICS_TOKEN: `${A}"` })).toThrowError(/cannot carry/);
    // Only commas and spaces: no token, yet not meant as "open".
    for (const value of [',', ' , ', ',,'])
      expect(() => loadConfig(metricsTokenSchema, { METRICS_TOKEN: value }), value).toThrowError(
        /^invalid environment: METRICS_TOKEN: is only commas and spaces: no token in it;[^\n]*$/,
      );
  });
});

describe('metricsAuth', () => {
  it('with no token lets every request through', () => {
    const auth = metricsAuth([]);
    expect(auth.check(undefined)).toBeUndefined();
    expect(auth.check('Basic eDp5')).toBeUndefined();
  });

  it('accepts any token of the list as Bearer (scheme case-insensitive) and refuses the rest, saying why', () => {
    const auth = metricsAuth([A, B]);
    expect(auth.check(`Bearer ${A}`)).toBeUndefined();
    expect(auth.check(`bearer  ${B}`)).toBeUndefined();
    expect(auth.check(undefined)).toBe('missing');
    expect(auth.check('')).toBe('missing');
    expect(auth.check(`Basic ${Buffer.from(`x:${A}`).toString('base64')}`)).toBe('scheme');
    expect(auth.check(A)).toBe('scheme');
    expect(auth.check(`Bearer ${A} ${B}`)).toBe('scheme');
    expect(auth.check(`Bearer ${A}x`)).toBe('token');
    expect(auth.check(`Bearer ${A.slice(1)}`)).toBe('token');
    expect(auth.check(`Bearer ${A},${B}`)).toBe('token');
  });

  it('answers RFC 6750 challenges (invalid_token only for a wrong Bearer token) and a one-line JSON body', () => {
    const auth = metricsAuth([A]);
    expect(auth.challenge('missing')).toBe('Bearer realm="pganalytics-metrics"');
    expect(auth.challenge('scheme')).toBe('Bearer realm="pganalytics-metrics"');
    expect(auth.challenge('token')).toBe('Bearer realm="pganalytics-metrics", error="invalid_token"');
    for (const r of ['missing', 'scheme', 'token'] as const) {
      const body = auth.body(r);
      expect(body).not.toContain('\n');
      expect(JSON.parse(body)).toMatchObject({
        error: { code: 'UNAUTHORIZED', message: expect.stringContaining('METRICS_TOKEN') },
      });
      expect(body).not.toContain(A);
    }
  });
});

describe('isLoopbackHost', () => {
  it('is true only for addresses reachable from this machine alone', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1', 'localhost', 'LOCALHOST'])
      expect(isLoopbackHost(h), h).toBe(true);
    for (const h of ['0.0.0.0', '::', '10.0.0.5', '192.168.1.1', '::ffff:10.0.0.1', 'edge.example.com', '128.0.0.1'])
      expect(isLoopbackHost(h), h).toBe(false);
  });
});

describe('openMetricsWarningFor', () => {
  it('says /metrics is open only when there is no token and the address is not loopback', () => {
    expect(openMetricsWarningFor([], '0.0.0.0', 'port 9 (HOST 0.0.0.0)')).toBe(
      '/metrics is open to anyone who reaches port 9 (HOST 0.0.0.0): set METRICS_TOKEN (`openssl rand -hex 32`) and scrape with Authorization: Bearer <token>',
    );
    expect(openMetricsWarningFor([], '10.1.2.3', 'x')).toBeDefined();
    expect(openMetricsWarningFor([A], '0.0.0.0', 'x')).toBeUndefined();
    for (const host of ['127.0.0.1', '::1', 'localhost']) expect(openMetricsWarningFor([], host, 'x'), host).toBeUndefined();
  });
});
