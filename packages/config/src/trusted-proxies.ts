import { isIP } from 'node:net';
import { z } from 'zod';
import { bool, int } from './fields';

/**
 * TRUST_PROXY and TRUST_PROXY_HOPS, read by every service that names its client (the admin service's
 * login limit and audit entries, the ingest edge's enrollment limit and audit entries). One rule,
 * here: forwardedEntry and clientAddress.
 */
export const trustProxySchema = z.object({
  /**
   * Honour the X-Forwarded-* headers of the reverse proxies / load balancers in front of the service
   * (X-Forwarded-For for the client address; the admin service also -Proto and -Host); default false.
   * Without it they are ignored: a client can write them.
   */
  TRUST_PROXY: bool(false),
  /**
   * Proxies in front of the service that append to X-Forwarded-For: the client address is the entry
   * this many from the right (clientAddress); default 1. Read only with TRUST_PROXY.
   */
  TRUST_PROXY_HOPS: int(1, 1, 32),
});

/**
 * The entry `hops` from the right of a header our proxies append to (X-Forwarded-For, -Proto,
 * -Host): each proxy appends what it saw (nginx's `$proxy_add_x_forwarded_for`), so the right-most
 * `hops` entries were written by our proxies and everything left of them by the client, who can put
 * anything there. With fewer entries than `hops` the left-most is taken (the first proxy's). Several
 * headers count as one list, in order. Undefined when there is none.
 */
export function forwardedEntry(header: string | readonly string[] | undefined, hops = 1): string | undefined {
  const entries = (typeof header === 'string' ? header : (header ?? []).join(','))
    .split(',')
    .map((e) => e.trim())
    .filter(Boolean);
  return entries[Math.max(0, entries.length - Math.max(1, hops))];
}

/**
 * The client's address, validated as an IP address (null when it is none). Behind trusted proxies
 * (`trustProxy`, TRUST_PROXY) it is X-Forwarded-For's entry `hops` from the right (TRUST_PROXY_HOPS,
 * forwardedEntry); without the header, or without TRUST_PROXY, the socket's peer address. Without
 * TRUST_PROXY the header is never read: a client cannot choose the address it is limited by.
 */
export function clientAddress(
  socketAddress: string | undefined,
  forwardedFor: string | readonly string[] | undefined,
  { trustProxy, hops = 1 }: { trustProxy: boolean; hops?: number },
): string | null {
  const forwarded = trustProxy ? forwardedEntry(forwardedFor, hops) : undefined;
  const ip = forwarded || socketAddress || '';
  return isIP(ip) ? ip : null;
}
