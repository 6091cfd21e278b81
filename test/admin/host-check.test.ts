import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { capturingLogger } from '../helpers';
import { createHarness, getWithHeaders as get, restartedService, trpcHttp, type Harness } from './harness';

describe('the Host check behind a trusted proxy (TRUST_PROXY)', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await createHarness({ TRUST_PROXY: 'true', ADMIN_ALLOWED_HOSTS: 'admin.example.com' });
    await h.listen();
  }, 120_000);
  afterAll(async () => h?.[Symbol.asyncDispose]());

  const status = async (headers: Record<string, string>, p = '/trpc/auth.me') => (await get(h.url, p, headers)).status;

  it('a rebound page (Host attacker.example) is refused whatever X-Forwarded-Host it adds', async () => {
    expect(await status({ host: 'attacker.example' })).toBe(421);
    // review28's repro: this was 200
    expect(await status({ host: 'attacker.example', 'x-forwarded-host': 'localhost' })).toBe(421);
    expect(await status({ host: 'attacker.example', 'x-forwarded-host': 'admin.example.com' })).toBe(421);
    expect(await status({ host: 'attacker.example:8443', 'x-forwarded-host': '127.0.0.1' }, '/')).toBe(421);
    // probes still answer any Host
    expect(await status({ host: 'attacker.example', 'x-forwarded-host': 'localhost' }, '/healthz')).toBe(200);
  });

  it('both Host and the X-Forwarded-Host entry our proxy wrote (the right-most) must be allowed', async () => {
    const { port } = new URL(h.url);
    // a proxy forwarding Host: <upstream address> and X-Forwarded-Host: <public name>
    expect(await status({ host: `127.0.0.1:${port}`, 'x-forwarded-host': 'admin.example.com' })).toBe(200);
    expect(await status({ host: 'admin.example.com', 'x-forwarded-host': 'admin.example.com' })).toBe(200);
    expect(await status({ host: `127.0.0.1:${port}` })).toBe(200);
    expect(await status({ host: `127.0.0.1:${port}`, 'x-forwarded-host': 'attacker.example' })).toBe(421);
    // an upstream name not listed
    expect(await status({ host: 'admin-api:3000', 'x-forwarded-host': 'admin.example.com' })).toBe(421);
    // a proxy that appends (Apache): the client's own entry is on the left, ours on the right
    expect(await status({ host: `127.0.0.1:${port}`, 'x-forwarded-host': 'attacker.example, admin.example.com' })).toBe(200);
    expect(await status({ host: `127.0.0.1:${port}`, 'x-forwarded-host': 'admin.example.com, attacker.example' })).toBe(421);
  });

  it('the 421 names each host refused and the header it came in', async () => {
    const { port } = new URL(h.url);
    const NOT_IN = 'not in ADMIN_ALLOWED_HOSTS (comma-separated names, or * for any)\n';
    expect((await get(h.url, '/', { host: 'attacker.example', 'x-forwarded-host': 'localhost' })).body).toBe(
      `host "attacker.example" (Host) is ${NOT_IN}`,
    );
    expect((await get(h.url, '/', { host: 'Attacker.Example.:8443', 'x-forwarded-host': 'attacker.example' })).body).toBe(
      `host "attacker.example" (Host, X-Forwarded-Host) is ${NOT_IN}`,
    );
    expect((await get(h.url, '/', { host: `127.0.0.1:${port}`, 'x-forwarded-host': 'pga.internal:443' })).body).toBe(
      `host "pga.internal" (X-Forwarded-Host) is ${NOT_IN}`,
    );
    expect((await get(h.url, '/', { host: 'admin-api:3000', 'x-forwarded-host': 'pga.internal' })).body).toBe(
      `hosts "admin-api" (Host) and "pga.internal" (X-Forwarded-Host) are ${NOT_IN}`,
    );
  });

  it('the CSRF check compares Origin with the same X-Forwarded-Host entry', async () => {
    const logout = (origin: string, xfh: string) =>
      trpcHttp(h.url, 'mutation', 'auth.logout', undefined, { headers: { origin, 'x-forwarded-host': xfh } });
    expect((await logout('http://admin.example.com', 'evil.example, admin.example.com')).status).toBe(200);
    const refused = await logout('http://evil.example', 'evil.example, admin.example.com');
    expect(refused.status).toBe(403);
    expect(refused.text).toContain('cross-origin request refused');
  });

  it('with TRUST_PROXY_HOPS=2 the entry the first of two appending proxies wrote is checked', async () => {
    await using two = restartedService(h, {
      TRUST_PROXY: 'true',
      TRUST_PROXY_HOPS: '2',
      ADMIN_ALLOWED_HOSTS: 'admin.example.com',
    });
    const url = `http://127.0.0.1:${await two.listen()}`;
    const { port } = new URL(url);
    const at = async (xfh: string) =>
      (await get(url, '/trpc/auth.me', { host: `127.0.0.1:${port}`, 'x-forwarded-host': xfh })).status;
    expect(await at('attacker.example, admin.example.com, 10.0.0.2:8080')).toBe(200);
    expect(await at('admin.example.com, attacker.example, 10.0.0.2:8080')).toBe(421);
    expect(await at('admin.example.com')).toBe(200);
  });
});

describe('the Host check without TRUST_PROXY', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await createHarness({ ADMIN_ALLOWED_HOSTS: 'admin.example.com' });
    await h.listen();
  }, 120_000);
  afterAll(async () => h?.[Symbol.asyncDispose]());

  it('says which name arrived (quoted as the client sent it, sanitised) and logs one warning per name', async () => {
    const { logger, lines } = capturingLogger('admin-test');
    await using svc = restartedService(h, { ADMIN_ALLOWED_HOSTS: 'admin.example.com' }, logger);
    const url = `http://127.0.0.1:${await svc.listen()}`;
    const NOT_IN = 'not in ADMIN_ALLOWED_HOSTS (comma-separated names, or * for any)\n';
    for (let i = 0; i < 3; i++)
      expect(await get(url, '/trpc/auth.me', { host: 'PGA.internal:3000' })).toEqual({
        status: 421,
        body: `host "pga.internal" is ${NOT_IN}`,
      });
    expect((await get(url, '/', { host: 'pga.internal.' })).status).toBe(421);
    expect(await get(url, '/', { host: 'Evil<b>"x\'.example' })).toEqual({
      status: 421,
      body: `host "evil?b??x?.example" is ${NOT_IN}`,
    });
    expect((await get(url, '/', { host: `${'a'.repeat(300)}.example` })).body).toBe(`host "${'a'.repeat(100)}…" is ${NOT_IN}`);
    expect((await get(url, '/healthz', { host: 'probe.internal' })).status).toBe(200);
    const warnings = lines.filter((l) => String(l.msg).includes('ADMIN_ALLOWED_HOSTS'));
    expect(warnings.map((l) => [l.level, l.host, l.headers, l.allowedHosts])).toEqual([
      [40, 'pga.internal', ['Host'], ['admin.example.com']],
      [40, 'evil?b??x?.example', ['Host'], ['admin.example.com']],
      [40, `${'a'.repeat(100)}…`, ['Host'], ['admin.example.com']],
    ]);
    expect(warnings[0]!.msg).toContain('"pga.internal"');
    expect(warnings[0]!.msg).toContain('* for any');
  });

  it('ignores X-Forwarded-Host', async () => {
    const { port } = new URL(h.url);
    expect(
      (await get(h.url, '/trpc/auth.me', { host: `127.0.0.1:${port}`, 'x-forwarded-host': 'attacker.example' })).status,
    ).toBe(200);
    expect((await get(h.url, '/trpc/auth.me', { host: 'attacker.example', 'x-forwarded-host': 'localhost' })).status).toBe(421);
  });
});
