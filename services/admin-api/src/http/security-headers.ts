import { isIP } from 'node:net';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { forwardedHost } from './request-meta';

/**
 * The Content-Security-Policy of every answer (UI and API). The built UI (vite) is one module
 * script and its chunks from /assets, no inline script or <style> (React's `style` props are
 * CSSOM, which style-src does not govern), and talks only to its own origin (/trpc, /readyz, the
 * live feed's event stream). Checked against the real build in headless Chromium
 * (test/admin/security-headers.test.ts). Frames: none (clickjacking), as X-Frame-Options for old
 * browsers.
 */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const HEADERS: Record<string, string> = {
  'content-security-policy': CONTENT_SECURITY_POLICY,
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'x-content-type-options': 'nosniff',
  'cross-origin-opener-policy': 'same-origin',
};

/** Sets the security headers on an answer before anything else writes its head. */
export function setSecurityHeaders(res: ServerResponse): void {
  for (const [name, value] of Object.entries(HEADERS)) res.setHeader(name, value);
}

/** The host name of a Host header (`name`, `name:port`, `[v6]:port`), lower-cased, without a trailing dot. */
function hostName(host: string): string {
  const h = host.trim().toLowerCase();
  const name = h.startsWith('[') ? h.slice(1, h.indexOf(']') > 0 ? h.indexOf(']') : undefined) : h.replace(/:\d*$/, '');
  return name.replace(/\.$/, '');
}

/**
 * Whether the service answers to this Host (DNS rebinding: a page on attacker.example whose name
 * is made to resolve to 127.0.0.1 would otherwise be same-origin with the service as far as the
 * browser is concerned, CSRF's Origin check included). Always allowed: an IP address (a rebound
 * page has a name), `localhost` and `*.localhost`, and a request without Host (HTTP/1.0, not a
 * browser). Other names only when listed in ADMIN_ALLOWED_HOSTS (`*`: any).
 */
export function hostAllowed(host: string | undefined, allowedHosts: readonly string[]): boolean {
  if (host === undefined || allowedHosts.includes('*')) return true;
  const name = hostName(host);
  if (isIP(name) !== 0 || name === 'localhost' || name.endsWith('.localhost')) return true;
  return allowedHosts.some((allowed) => hostName(allowed) === name);
}

/** A Host check's refusal: the name refused and the header it came in. */
export interface HostRefusal {
  name: string;
  header: 'Host' | 'X-Forwarded-Host';
}

/**
 * The host names of a request the service does not answer to (empty: it may proceed). Host always
 * counts; behind trusted proxies (TRUST_PROXY) so does the X-Forwarded-Host entry they wrote
 * (request-meta.ts forwardedHost, TRUST_PROXY_HOPS from the right), and both must pass: a rebound
 * page is same-origin with the service and may add any X-Forwarded-Host it likes, which a proxy
 * that does not set the header passes on, with the Host (attacker.example) it was sent.
 */
export function hostRefusals(
  req: IncomingMessage,
  { trustProxy, hops, allowedHosts }: { trustProxy: boolean; hops: number; allowedHosts: readonly string[] },
): HostRefusal[] {
  const checked: [HostRefusal['header'], string | undefined][] = [['Host', req.headers.host]];
  if (trustProxy) checked.push(['X-Forwarded-Host', forwardedHost(req, hops)]);
  return checked
    .filter(([, host]) => !hostAllowed(host, allowedHosts))
    .map(([header, host]) => ({ header, name: hostName(host!) }));
}
