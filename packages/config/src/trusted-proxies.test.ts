import { describe, expect, it, vi } from 'vitest';
import { clientAddress, forwardedEntry, limitKey, normalizeAddress, unreadableForwardedWarning } from './trusted-proxies';

describe('clientAddress (TRUST_PROXY, TRUST_PROXY_HOPS: the admin service and the ingest edge)', () => {
  it('without TRUST_PROXY is the socket peer, whatever X-Forwarded-For says', () => {
    expect(clientAddress('10.0.0.5', '203.0.113.9', { trustProxy: false })).toBe('10.0.0.5');
    // A dual-stack socket's IPv4 peer (Node writes '::ffff:…', uWS.js eight 4-digit groups) is the IPv4 address.
    expect(clientAddress('::ffff:10.0.0.5', undefined, { trustProxy: false })).toBe('10.0.0.5');
    expect(clientAddress('0000:0000:0000:0000:0000:ffff:7f00:0001', undefined, { trustProxy: false })).toBe('127.0.0.1');
    expect(clientAddress('0000:0000:0000:0000:0000:0000:0000:0001', undefined, { trustProxy: false })).toBe('::1');
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
    expect(trusted('1.1.1.1, bogus')).toBe('10.0.0.5');
  });

  it('reads an entry with a port, and an IPv4-mapped one, as the address: one key per client (review 30 item 2)', () => {
    const trusted = (forwarded: string, hops = 1) => clientAddress('10.0.0.5', forwarded, { trustProxy: true, hops });
    // Azure Application Gateway appends ip:port.
    expect(trusted('203.0.113.5:51234')).toBe('203.0.113.5');
    expect(trusted('198.51.100.1, 203.0.113.5:51234')).toBe('203.0.113.5');
    expect(trusted('[2001:db8::1]:443')).toBe('2001:db8::1');
    expect(trusted('[2001:db8::1]')).toBe('2001:db8::1');
    expect(trusted('2001:DB8:0:0::1')).toBe('2001:db8::1');
    expect(trusted('::ffff:203.0.113.5')).toBe('203.0.113.5');
    expect(trusted('[::ffff:203.0.113.5]:80, 10.0.0.4', 2)).toBe('203.0.113.5');
    expect(trusted('203.0.113.5:port')).toBe('10.0.0.5'); // not a port: not an address
  });

  it('an entry that is not an address falls back to the socket peer, and says so', () => {
    const unreadable: string[] = [];
    const trusted = (forwarded: string) =>
      clientAddress('::ffff:10.0.0.5', forwarded, { trustProxy: true, onUnreadable: (e) => unreadable.push(e) });
    expect(trusted('unknown')).toBe('10.0.0.5');
    expect(trusted('203.0.113.9, _hidden')).toBe('10.0.0.5');
    expect(trusted('203.0.113.9')).toBe('203.0.113.9');
    expect(unreadable).toEqual(['unknown', '_hidden']);
    expect(clientAddress('bogus', 'unknown', { trustProxy: true })).toBeNull();
  });

  it('unreadableForwardedWarning warns once, not per request', () => {
    const warn = vi.fn();
    const onUnreadable = unreadableForwardedWarning({ warn }, 2);
    for (let i = 0; i < 100; i++) clientAddress('10.0.0.5', `x-${i}, 10.0.0.4`, { trustProxy: true, hops: 2, onUnreadable });
    expect(warn).toHaveBeenCalledTimes(1);
    expect(warn.mock.calls[0]![0]).toEqual({ entry: 'x-0', hops: 2 });
    expect(warn.mock.calls[0]![1]).toMatch(/entry 2 from the right \(TRUST_PROXY_HOPS\) is not an IP address/);
  });

  it('normalizeAddress: one spelling per address, null for what is none', () => {
    expect(normalizeAddress(' 192.0.2.1 ')).toBe('192.0.2.1');
    expect(normalizeAddress('::FFFF:c000:0201')).toBe('192.0.2.1');
    expect(normalizeAddress('::1')).toBe('::1');
    // The zone names this host's interface (Node's remoteAddress of a link-local peer); inet refuses it.
    expect(normalizeAddress('fe80::1%eth0')).toBe('fe80::1');
    expect(normalizeAddress('[FE80::0:1%25eth0]:443')).toBe('fe80::1');
    expect(normalizeAddress('fe80::1%2')).toBe('fe80::1');
    expect(normalizeAddress('[::1')).toBeNull();
    expect(normalizeAddress('192.0.2.1:')).toBeNull();
    expect(normalizeAddress('')).toBeNull();
  });

  it('limitKey: an IPv4 address itself, an IPv6 one its /64 as PostgreSQL writes the network', () => {
    expect(limitKey('203.0.113.5')).toBe('203.0.113.5');
    expect(limitKey('2001:db8:1:2:3:4:5:6')).toBe('2001:db8:1:2::/64');
    expect(limitKey('2001:db8:1:2::9')).toBe('2001:db8:1:2::/64');
    expect(limitKey('2001:db8::1')).toBe('2001:db8::/64');
    expect(limitKey('2001:db8:0:0:1::')).toBe('2001:db8::/64');
    expect(limitKey('2001:0:0:7::1')).toBe('2001:0:0:7::/64');
  });

  it('limitKey: where one /64 is many unrelated clients, the whole address (or the IPv4 client of a NAT64 address)', () => {
    // Link-local (fe80::/10): every neighbour is in fe80::/64.
    expect(limitKey('fe80::1')).toBe('fe80::1');
    expect(limitKey('fe80::2')).toBe('fe80::2');
    expect(limitKey('febf:0:0:0:1:2:3:4')).toBe('febf:0:0:0:1:2:3:4');
    expect(limitKey(normalizeAddress('fe80::1%eth0')!)).toBe('fe80::1');
    // The /64 of zeros: loopback, unspecified, IPv4-compatible, SIIT.
    expect(limitKey('::1')).toBe('::1');
    expect(limitKey('::')).toBe('::');
    expect(limitKey(normalizeAddress('::1.2.3.4')!)).toBe('::102:304');
    expect(limitKey(normalizeAddress('::ffff:0:1.2.3.4')!)).toBe('::ffff:0:102:304');
    // NAT64's well-known prefix: the IPv4 client, as it would be keyed reaching the service over IPv4.
    expect(normalizeAddress('64:ff9b::1.2.3.4')).toBe('1.2.3.4');
    expect(normalizeAddress('[64:FF9B::102:304]:443')).toBe('1.2.3.4');
    expect(limitKey(normalizeAddress('64:ff9b::1.2.3.4')!)).toBe('1.2.3.4');
    expect(limitKey(normalizeAddress('64:ff9b::5.6.7.8')!)).toBe('5.6.7.8');
    expect(limitKey('64:ff9b::102:304')).toBe('1.2.3.4');
    // Not the well-known /96 (64:ff9b:1::/48 local use, a /64 with other bits set): a /64 as any other.
    expect(normalizeAddress('64:ff9b:1::102:304')).toBe('64:ff9b:1::102:304');
    expect(limitKey('64:ff9b:1::102:304')).toBe('64:ff9b:1::/64');
    expect(limitKey('64:ff9b::1:0:102:304')).toBe('64:ff9b::/64');
    // Global unicast and unique local addresses stay keyed by their /64; so does fec0:: (not link-local).
    expect(limitKey('fd00:1:2:3::4')).toBe('fd00:1:2:3::/64');
    expect(limitKey('fec0::1')).toBe('fec0::/64');
    expect(limitKey('0:0:0:1::1')).toBe('0:0:0:1::/64');
  });

  it('forwardedEntry reads the other forwarded headers the same way', () => {
    expect(forwardedEntry('http, https')).toBe('https');
    expect(forwardedEntry('https, http', 2)).toBe('https');
    expect(forwardedEntry(undefined)).toBeUndefined();
  });
});
