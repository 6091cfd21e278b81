import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { clientAddress, forwardedEntry } from '@pga/config';

/**
 * Client IP, validated as an address (without a port; an IPv4-mapped one as IPv4): behind trusted
 * proxies (`trustProxy`, TRUST_PROXY) the X-Forwarded-For entry `hops` from the right
 * (TRUST_PROXY_HOPS), else — or when that entry is not an address (`onUnreadable` is told) — the
 * socket's peer: the rule the ingest edge follows too (@pga/config clientAddress).
 */
export function clientIp(
  req: IncomingMessage,
  trustProxy: boolean,
  hops = 1,
  onUnreadable?: (entry: string) => void,
): string | null {
  return clientAddress(req.socket.remoteAddress, req.headers['x-forwarded-for'], { trustProxy, hops, onUnreadable });
}

/**
 * The host a client addressed as the proxies in front of us report it: X-Forwarded-Host's entry
 * `hops` from the right (TRUST_PROXY_HOPS), as clientIp reads X-Forwarded-For. A proxy that sets the
 * header (nginx `proxy_set_header X-Forwarded-Host $host`) leaves one entry, its own; one that
 * appends (Apache) puts its own right of whatever the client sent; the entries left of the ones our
 * proxies wrote are the client's own text. Undefined without the header.
 */
export function forwardedHost(req: IncomingMessage, hops = 1): string | undefined {
  return forwardedEntry(req.headers['x-forwarded-host'], hops);
}

/**
 * Whether the client reached us over TLS: directly, or behind trusted proxies (TRUST_PROXY) per the
 * X-Forwarded-Proto entry `hops` from the right (TRUST_PROXY_HOPS), as X-Forwarded-For is read: a
 * proxy that sets it (nginx `proxy_set_header X-Forwarded-Proto $scheme`) leaves its own entry only,
 * one that appends puts its own right of the client's text. Decides the session cookie's Secure flag
 * (without COOKIE_SECURE) and the scheme of ownOrigin (the CSRF Origin check): until 2026-12-07 the
 * first entry was read, which behind an appending proxy is the client's, so a client could turn
 * Secure off (and a proxy that saw https, on: `http, https` read as plain HTTP).
 */
export function isTls(req: IncomingMessage, trustProxy: boolean, hops = 1): boolean {
  if ((req.socket as TLSSocket).encrypted) return true;
  return trustProxy && forwardedEntry(req.headers['x-forwarded-proto'], hops)?.toLowerCase() === 'https';
}

/**
 * The origin this request addressed: scheme + Host, or behind trusted proxies + the X-Forwarded-Host
 * entry they wrote (forwardedHost), the one the Host check (security-headers.ts hostRefusals) reads.
 */
export function ownOrigin(req: IncomingMessage, trustProxy: boolean, hops = 1): string | undefined {
  const host = (trustProxy && forwardedHost(req, hops)) || req.headers.host;
  return host ? `${isTls(req, trustProxy, hops) ? 'https' : 'http'}://${host}` : undefined;
}

/**
 * The path a request addresses, as tRPC's adapter reads it: from an origin-form target (`/trpc/x?…`)
 * or an absolute-form one (`http://host/trpc/x`, which HTTP/1.1 servers must accept). Undefined when
 * the target is not a URL at all (`http://x:99999/`).
 */
export function requestPathname(req: IncomingMessage): string | undefined {
  try {
    return new URL(req.url ?? '/', 'http://localhost').pathname;
  } catch {
    return undefined;
  }
}
