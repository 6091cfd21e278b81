import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { createLogger } from '@pga/logger';
import { hostRefusalMessage, hostRefusals, hostRefusalWarnings, type HostRefusal } from './security-headers';

const request = (headers: Record<string, string | string[]>) => ({ headers }) as unknown as IncomingMessage;

describe('the Host check', () => {
  const allowedHosts = ['admin.example.com'];

  it('reads Host, and behind TRUST_PROXY also the X-Forwarded-Host entry TRUST_PROXY_HOPS from the right', () => {
    const check = (headers: Record<string, string | string[]>, trustProxy = true, hops = 1) =>
      hostRefusals(request(headers), { trustProxy, hops, allowedHosts });
    expect(check({ host: 'attacker.example', 'x-forwarded-host': 'localhost' })).toEqual([
      { header: 'Host', name: 'attacker.example' },
    ]);
    expect(check({ host: '10.0.0.5:3000', 'x-forwarded-host': 'admin.example.com' })).toEqual([]);
    expect(check({ host: '10.0.0.5:3000', 'x-forwarded-host': 'localhost, attacker.example' })).toEqual([
      { header: 'X-Forwarded-Host', name: 'attacker.example' },
    ]);
    expect(check({ host: '10.0.0.5:3000', 'x-forwarded-host': 'attacker.example, admin.example.com' })).toEqual([]);
    expect(check({ host: '10.0.0.5', 'x-forwarded-host': ['attacker.example', 'admin.example.com'] })).toEqual([]);
    expect(check({ host: '10.0.0.5', 'x-forwarded-host': 'admin.example.com, attacker.example, 10.0.0.2' }, true, 2)).toEqual([
      { header: 'X-Forwarded-Host', name: 'attacker.example' },
    ]);
    expect(check({ host: '10.0.0.5', 'x-forwarded-host': 'admin.example.com' }, true, 3)).toEqual([]);
    expect(check({ host: '10.0.0.5', 'x-forwarded-host': 'attacker.example' }, false)).toEqual([]);
    expect(check({})).toEqual([]);
  });

  it('the 421 message quotes the names refused and, behind TRUST_PROXY, their headers', () => {
    const tail = 'not in ADMIN_ALLOWED_HOSTS (comma-separated names, or * for any)\n';
    expect(hostRefusalMessage([{ header: 'Host', name: 'pga.internal' }], false)).toBe(`host "pga.internal" is ${tail}`);
    expect(
      hostRefusalMessage(
        [
          { header: 'Host', name: 'admin-api' },
          { header: 'X-Forwarded-Host', name: 'pga.internal' },
        ],
        true,
      ),
    ).toBe(`hosts "admin-api" (Host) and "pga.internal" (X-Forwarded-Host) are ${tail}`);
  });

  it('logs one warning per host name refused, for a bounded number of names', () => {
    const lines: { level: number; msg: string; host?: string }[] = [];
    const logger = createLogger({
      name: 't',
      level: 'info',
      destination: { write: (l: string) => void lines.push(JSON.parse(l)) },
    });
    const warn = hostRefusalWarnings(logger, allowedHosts, 3);
    const at = (...names: string[]): HostRefusal[] => names.map((name) => ({ header: 'Host', name }));
    warn(at('a.internal'));
    warn(at('a.internal'));
    warn([...at('b.internal'), { header: 'X-Forwarded-Host', name: 'b.internal' }]);
    warn(at('c.internal', 'a.internal'));
    for (let i = 0; i < 50; i++) warn(at(`spray${i}.example`, 'b.internal'));
    expect(lines.map((l) => [l.level, l.host ?? l.msg])).toEqual([
      [40, 'a.internal'],
      [40, 'b.internal'],
      [40, 'c.internal'],
      [40, '3 host names refused (421) already logged; the others are not'],
    ]);
  });
});
