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
   * this many from the right (clientAddress), X-Forwarded-Proto and -Host are read at the same entry
   * (forwardedEntry); default 1. It must hold on every path to the service (forwardedEntry). Read
   * only with TRUST_PROXY.
   */
  TRUST_PROXY_HOPS: int(1, 1, 32),
});

/**
 * The entry `hops` from the right of a header our proxies append to (X-Forwarded-For, -Proto,
 * -Host): each proxy appends what it saw (nginx's `$proxy_add_x_forwarded_for`), so the right-most
 * `hops` entries were written by our proxies and everything left of them by the client, who can put
 * anything there. `hops` must be the number of proxies on every path to the service: a request
 * that came by a path with fewer (one that skipped a CDN, reached an internal balancer directly)
 * has the client's own text at that entry, or, with fewer entries than `hops`, at the left-most,
 * which is what is then taken — the address the first proxy saw only when the client sent no
 * header. Several headers count as one list, in order. Undefined when there is none.
 */
export function forwardedEntry(header: string | readonly string[] | undefined, hops = 1): string | undefined {
  const entries = (typeof header === 'string' ? header : (header ?? []).join(','))
    .split(',')
    .map((e) => e.trim())
    .filter(Boolean);
  return entries[Math.max(0, entries.length - Math.max(1, hops))];
}

/**
 * An address as text, as one key per address, or null when it is none: a port is taken off
 * ('203.0.113.5:51234', '[2001:db8::1]:443': Azure Application Gateway appends ip:port to
 * X-Forwarded-For), and so is an IPv6 zone ('fe80::1%eth0'), IPv6 is written in its short form
 * (uWS.js writes the peer as eight 4-digit groups), and an IPv4-mapped IPv6 address
 * ('::ffff:203.0.113.5', a dual-stack socket's IPv4 peer) or a NAT64 one of the well-known prefix
 * ('64:ff9b::203.0.113.5', an IPv4 client translated on its way in) as the IPv4 address. Otherwise one client would have two keys in a limit (and two spellings in
 * the audit log).
 */
export function normalizeAddress(text: string): string | null {
  let address = text.trim();
  const bracketed = /^\[([^\]]+)\](?::\d{1,5})?$/.exec(address);
  const v4WithPort = /^(\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}$/.exec(address);
  if (bracketed) address = bracketed[1]!;
  else if (v4WithPort) address = v4WithPort[1]!;
  const family = isIP(address);
  if (family === 4) return address;
  if (family !== 6) return null;
  // A zone ('fe80::1%eth0': Node names the interface of a link-local peer in remoteAddress, and a
  // Node proxy writes that into X-Forwarded-For) names this host's interface, not the client, and
  // PostgreSQL's inet refuses it: every login (and enrollment) from such a client failed with 500.
  address = address.replace(/%.*$/s, '');
  let short: string;
  try {
    short = new URL(`http://[${address}]/`).hostname.slice(1, -1);
  } catch {
    return null;
  }
  return embeddedIpv4(ipv6Groups(short)) ?? short;
}

/** The eight 16-bit groups of an IPv6 address in any valid spelling (no zone, no dotted tail). */
function ipv6Groups(address: string): number[] {
  const [head, tail] = address.split('::') as [string, string | undefined];
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  return groups.map((g) => parseInt(g, 16));
}

/**
 * The IPv4 client an IPv6 address stands for, when it is one: an IPv4-mapped address
 * (`::ffff:a.b.c.d`, a dual-stack socket's IPv4 peer) or one of NAT64's well-known prefix
 * (`64:ff9b::a.b.c.d`, RFC 6052: an IPv4 client translated by a NAT64/SIIT in front of the service).
 */
function embeddedIpv4(groups: readonly number[]): string | undefined {
  const mapped = groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff;
  const nat64 = groups[0] === 0x64 && groups[1] === 0xff9b && groups.slice(2, 6).every((g) => g === 0);
  if (!mapped && !nat64) return undefined;
  const [high, low] = [groups[6]!, groups[7]!];
  return `${high >> 8}.${high & 255}.${low >> 8}.${low & 255}`;
}

/**
 * The key of a client address (normalizeAddress's) in the per-address failure limits (the admin's
 * failed logins per IP, the edge's failed enrollments): an IPv4 address itself, an IPv6 address its
 * /64 (`2001:db8:1:2::/64`), in PostgreSQL's cidr text. One IPv6 host holds a whole /64 (SLAAC,
 * privacy addresses, a cloud VM's prefix) and can send each guess from another address of it: keyed
 * by the /128 the limit never filled. The audit log keeps the whole address.
 *
 * Except where one /64 is many unrelated clients, keyed by their whole address (a /128): link-local
 * addresses (`fe80::/10`: every neighbour on every link is in `fe80::/64`), and the /64 of zeros
 * (`::1`, `::`, the deprecated IPv4-compatible `::a.b.c.d`, SIIT's `::ffff:0:a.b.c.d`). A NAT64
 * address of the well-known prefix (`64:ff9b::/96`: all of the IPv4 Internet in one /64) is its IPv4
 * client's address (normalizeAddress writes it so). Until 2026-12-08 these were one key each, and
 * one client's failures locked out all the others (review34 F3). Teredo (`2001::/32`) and
 * network-specific NAT64 prefixes are keyed by /64 like any global address.
 */
export function limitKey(address: string): string {
  if (!address.includes(':')) return address;
  const groups = ipv6Groups(address);
  const ipv4 = embeddedIpv4(groups);
  if (ipv4) return ipv4;
  const linkLocal = (groups[0]! & 0xffc0) === 0xfe80;
  const zeros = groups.slice(0, 4).every((g) => g === 0);
  if (linkLocal || zeros) return address;
  const prefix = groups.slice(0, 4).map((g) => g.toString(16));
  // As PostgreSQL writes the network: trailing zero groups folded into '::'.
  while (prefix.length > 0 && prefix[prefix.length - 1] === '0') prefix.pop();
  return `${prefix.join(':')}::/64`;
}

/**
 * The client's address (normalizeAddress: no port, one spelling), null when there is none. Behind
 * trusted proxies (`trustProxy`, TRUST_PROXY) it is X-Forwarded-For's entry `hops` from the right
 * (TRUST_PROXY_HOPS, forwardedEntry); without the header, without TRUST_PROXY, or when that entry is
 * not an address ('unknown', an obfuscated name: `onUnreadable` is told), the socket's peer
 * address. Without TRUST_PROXY the header is never read: a client cannot choose the address it is
 * limited by.
 */
export function clientAddress(
  socketAddress: string | undefined,
  forwardedFor: string | readonly string[] | undefined,
  { trustProxy, hops = 1, onUnreadable }: { trustProxy: boolean; hops?: number; onUnreadable?: (entry: string) => void },
): string | null {
  const forwarded = trustProxy ? forwardedEntry(forwardedFor, hops) : undefined;
  if (forwarded) {
    const address = normalizeAddress(forwarded);
    if (address) return address;
    onUnreadable?.(forwarded);
  }
  return socketAddress ? normalizeAddress(socketAddress) : null;
}

/**
 * An `onUnreadable` for clientAddress that warns once (make one per service, at its start): an
 * X-Forwarded-For entry that is not an address is what the proxies write (their configuration), not
 * a request's doing, so the first says it all; the clients then share the proxy's address in the
 * limits and the audit log.
 */
export function unreadableForwardedWarning(
  logger: { warn(fields: object, message: string): void },
  hops: number,
): (entry: string) => void {
  let warned = false;
  return (entry) => {
    if (warned) return;
    warned = true;
    logger.warn(
      { entry: entry.slice(0, 100), hops },
      `X-Forwarded-For's entry ${hops} from the right (TRUST_PROXY_HOPS) is not an IP address: the TCP peer's address is used instead, so the clients behind that proxy share one address in the failure limits and the audit log; make the proxies write the client's address (or correct TRUST_PROXY_HOPS). Logged once`,
    );
  };
}
