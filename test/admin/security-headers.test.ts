import path from 'node:path';
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { createLogger } from '@pga/logger';
import { ensureWebBuild } from '../../scripts/lib/web-build';
import { launchBrowser } from '../helpers';
import { createHarness, getWithHeaders, type Harness } from './harness';

const getWithHostOf = (url: string, p: string, host: string) => getWithHeaders(url, p, { host });

describe('security headers and the Host check', () => {
  let h: Harness;
  beforeAll(async () => {
    // the real UI build, as npm start serves it
    await ensureWebBuild(
      path.resolve(import.meta.dirname, '../..'),
      createLogger({ name: 'test', level: 'silent', pretty: false }),
    );
    h = await createHarness({ ADMIN_ALLOWED_HOSTS: 'Admin.Example.com' });
    await h.listen();
  }, 120_000);
  afterAll(async () => h?.[Symbol.asyncDispose]());

  it('sends CSP (frame-ancestors none), X-Frame-Options DENY, Referrer-Policy and nosniff on UI and API answers', async () => {
    for (const p of ['/', '/collectors/register', '/assets/gone.js', '/trpc/auth.me', '/healthz', '/readyz']) {
      const res = await fetch(h.url + p);
      await res.arrayBuffer();
      const csp = res.headers.get('content-security-policy') ?? '';
      expect(csp, p).toContain("frame-ancestors 'none'");
      expect(csp, p).toContain("script-src 'self'");
      expect(csp, p).toContain("object-src 'none'");
      expect(csp, p).toContain("base-uri 'none'");
      expect(res.headers.get('x-frame-options'), p).toBe('DENY');
      expect(res.headers.get('referrer-policy'), p).toBe('no-referrer');
      expect(res.headers.get('x-content-type-options'), p).toBe('nosniff');
    }
  });

  it('answers only to IP addresses, localhost and ADMIN_ALLOWED_HOSTS (DNS rebinding); probes to any', async () => {
    const { port } = new URL(h.url);
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, `admin.example.com`, 'ADMIN.example.com.:443'])
      expect((await getWithHostOf(h.url, '/trpc/auth.me', host)).status, host).toBe(200);
    const rebound = await getWithHostOf(h.url, '/trpc/auth.me', `attacker.example:${port}`);
    expect(rebound).toEqual({
      status: 421,
      body: 'host "attacker.example" is not in ADMIN_ALLOWED_HOSTS (comma-separated names, or * for any)\n',
    });
    expect((await getWithHostOf(h.url, '/', 'attacker.example')).status).toBe(421);
    expect((await getWithHostOf(h.url, '/healthz', 'attacker.example')).status).toBe(200);
  });

  it('the built UI works under the policy in Chromium, with no CSP violation; a violation would show', async () => {
    await using browser = await launchBrowser();
    const page = await browser.newPage();
    const consoleErrors: string[] = [];
    page.on('console', (m) => {
      // the browser's own request for /favicon.ico (the UI has none) answers 404: not the policy's doing
      if (m.type() === 'error' && !m.location().url.endsWith('/favicon.ico')) consoleErrors.push(m.text());
    });
    page.on('pageerror', (e) => consoleErrors.push(String(e)));
    await page.addInitScript(() => {
      (window as unknown as { cspViolations: string[] }).cspViolations = [];
      document.addEventListener('securitypolicyviolation', (e) =>
        (window as unknown as { cspViolations: string[] }).cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`),
      );
    });
    const response = await page.goto(h.url);
    expect(response?.headers()['content-security-policy']).toContain("default-src 'self'");
    await expect.poll(() => page.getByRole('heading', { level: 1 }).textContent()).toBe('pgAnalytics Central');
    await expect.poll(() => page.getByTestId('health').textContent()).toBe('healthy');
    const violations = () => page.evaluate(() => (window as unknown as { cspViolations: string[] }).cspViolations);
    expect(await violations()).toEqual([]);
    expect(consoleErrors).toEqual([]);

    // the policy is in force: an inline script (what an injected <script> would be) is blocked and reported
    await page.evaluate(() => {
      const s = document.createElement('script');
      s.textContent = 'window.inlineRan = true';
      document.head.append(s);
    });
    await expect.poll(violations).toEqual([expect.stringMatching(/^script-src/)]);
    expect(await page.evaluate(() => (window as unknown as { inlineRan?: boolean }).inlineRan)).toBeUndefined();
    await expect.poll(() => consoleErrors.join('\n')).toMatch(/Content Security Policy/);
  }, 60_000);
});
