import { describe, expect, it } from 'vitest';
import { clientAddress, forwardedEntry } from './trusted-proxies';

describe('clientAddress (TRUST_PROXY, TRUST_PROXY_HOPS: the admin service and the ingest edge)', () => {
  it('without TRUST_PROXY is the socket peer, whatever X-Forwarded-For says', () => {
    expect(clientAddress('10.0.0.5', '203.0.113.9', { trustProxy: false })).toBe('10.0.0.5');
    expect(clientAddress('::ffff:10.0.0.5', undefined, { trustProxy: false })).toBe('::ffff:10.0.0.5');
    expect(clientAddress('not-an-address', undefined, { trustProxy: false })).toBeNull();
  });

  it('behind TRUST_PROXY is the entry HOPS from the right, several headers read as one list', () => {
    const trusted = (forwarded: string | string[] | undefined, hops = 1) =>
      clientAddress('10.0.0.5', forwarded, { trustProxy: true, hops });
    expect(trusted('1.1.1.1, 203.0.113.9')).toBe('203.0.113.9');
    expect(trusted(['1.1.1.1', '203.0.113.9'])).toBe('203.0.113.9');
    expect(trusted('1.1.1.1, 203.0.113.9, 10.0.0.4', 2)).toBe('203.0.113.9');
    expect(trusted('203.0.113.9', 3)).toBe('203.0.113.9');
    expect(trusted(undefined)).toBe('10.0.0.5');
    expect(trusted('')).toBe('10.0.0.5');
    expect(trusted('1.1.1.1, bogus')).toBeNull();
  });

  it('forwardedEntry reads the other forwarded headers the same way', () => {
    expect(forwardedEntry('http, https')).toBe('https');
    expect(forwardedEntry('https, http', 2)).toBe('https');
    expect(forwardedEntry(undefined)).toBeUndefined();
  });
});
