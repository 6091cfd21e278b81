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
