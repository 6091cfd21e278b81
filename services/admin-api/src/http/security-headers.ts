import { isIP } from 'node:net';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '@pga/logger';
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
    .map(([header, host]) => ({ header, name: printable(hostName(host!)) }));
}

/**
 * A host name as the client sent it, fit to quote in an answer or a log line: characters a host
 * name (or a bracketed IPv6 address) has, any other as `?`, at most 100 of them.
 */
function printable(name: string): string {
  const safe = name.replace(/[^a-z0-9._:[\]-]/g, '?');
  return safe.length > 100 ? `${safe.slice(0, 100)}…` : safe;
}

/** The names refused, each with the header(s) it came in, in order. */
function byName(refused: readonly HostRefusal[]): Map<string, string[]> {
  const names = new Map<string, string[]>();
  for (const { name, header } of refused) names.set(name, [...(names.get(name) ?? []), header]);
  return names;
}

/**
 * The 421 answer's text: the name(s) refused, quoted, and what to do (an operator who reaches the
 * service by a name of its own meets this first). Behind TRUST_PROXY, two headers are checked, so
 * each name says which it came in.
 */
export function hostRefusalMessage(refused: readonly HostRefusal[], trustProxy: boolean): string {
  const names = [...byName(refused)].map(([name, headers]) => `"${name}"${trustProxy ? ` (${headers.join(', ')})` : ''}`);
  const [subject, verb] = names.length === 1 ? [`host ${names[0]}`, 'is'] : [`hosts ${names.join(' and ')}`, 'are'];
  return `${subject} ${verb} not in ADMIN_ALLOWED_HOSTS (comma-separated names, or * for any)\n`;
}

/** Host names refused that get a warning line of their own; past them, one line says no more will. */
export const HOST_WARNINGS_MAX = 100;

/**
 * Logs a warning the first time each host name is refused (an operator's name missing from
 * ADMIN_ALLOWED_HOSTS after an upgrade shows once, not per request), for up to `max` names: the
 * names are the client's choice, so the set of those already logged is bounded.
 */
export function hostRefusalWarnings(
  logger: Logger,
  allowedHosts: readonly string[],
  max = HOST_WARNINGS_MAX,
): (refused: readonly HostRefusal[]) => void {
  const logged = new Set<string>();
  let full = false;
  return (refused) => {
    for (const [host, headers] of byName(refused)) {
      if (logged.has(host) || full) continue;
      if (logged.size >= max) {
        full = true;
        logger.warn({ max }, `${max} host names refused (421) already logged; the others are not`);
        continue;
      }
      logged.add(host);
      logger.warn(
        { host, headers, allowedHosts },
        `refused a request (421) for host "${host}": not in ADMIN_ALLOWED_HOSTS; if users reach the service by this name, add it (comma-separated names, or * for any). Logged once per name`,
      );
    }
  };
}
