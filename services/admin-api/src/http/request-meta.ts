import { isIP } from 'node:net';
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';

/**
 * Client IP, validated as an address. Behind trusted proxies (`trustProxy`, TRUST_PROXY) it is the
 * X-Forwarded-For entry `hops` from the right (TRUST_PROXY_HOPS): each proxy appends the address it
 * received the request from (nginx's `$proxy_add_x_forwarded_for`), so the right-most `hops` entries
 * were written by our proxies and everything left of them by the client, who can put anything
 * there. With fewer entries than `hops` the left-most is taken (the first proxy's peer).
 * Several X-Forwarded-For headers count as one list, in order.
 */
export function clientIp(req: IncomingMessage, trustProxy: boolean, hops = 1): string | null {
  let forwarded: string | undefined;
  if (trustProxy) {
    const header = req.headers['x-forwarded-for'];
    const entries = (Array.isArray(header) ? header.join(',') : (header ?? ''))
      .split(',')
      .map((e) => e.trim())
      .filter(Boolean);
    forwarded = entries[Math.max(0, entries.length - Math.max(1, hops))];
  }
  const ip = forwarded || req.socket.remoteAddress || '';
  return isIP(ip) ? ip : null;
}

/** Whether the client reached us over TLS (directly, or per X-Forwarded-Proto behind a trusted proxy). */
export function isTls(req: IncomingMessage, trustProxy: boolean): boolean {
  if ((req.socket as TLSSocket).encrypted) return true;
  return (
    trustProxy &&
    String(req.headers['x-forwarded-proto'] ?? '')
      .split(',')[0]
      ?.trim() === 'https'
  );
}

/** The origin this request addressed (scheme + Host header). */
export function ownOrigin(req: IncomingMessage, trustProxy: boolean): string | undefined {
  const host =
    (trustProxy &&
      String(req.headers['x-forwarded-host'] ?? '')
        .split(',')[0]
        ?.trim()) ||
    req.headers.host;
  return host ? `${isTls(req, trustProxy) ? 'https' : 'http'}://${host}` : undefined;
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
