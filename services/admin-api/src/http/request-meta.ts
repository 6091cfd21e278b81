import { isIP } from 'node:net';
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';

/** Client IP (X-Forwarded-For's first entry only behind a trusted proxy), validated as an address. */
export function clientIp(req: IncomingMessage, trustProxy: boolean): string | null {
  const forwarded = trustProxy
    ? String(req.headers['x-forwarded-for'] ?? '')
        .split(',')[0]
        ?.trim()
    : undefined;
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
