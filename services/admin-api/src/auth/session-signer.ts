import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';
import { parseKeyring } from '@pga/crypto';

/**
 * Signs and checks session cookies, so a made-up cookie costs no PostgreSQL lookup.
 *
 * The cookie's value is `<keyId>.<sessionId>.<mac>`: the session id (256 random bits, only their
 * SHA-256 stored in `admin_sessions`, as before) and an HMAC-SHA256 of `<keyId>.<sessionId>` under a
 * key derived (HKDF-SHA256, its own label) from ENCRYPTION_KEY's key of that id. The MAC is checked in
 * constant time before any lookup (auth/session-lookup.ts): a cookie this installation did not issue
 * is "no session" at the cost of one HMAC. Until 2026-12-07 the cookie was the bare id, and every
 * well-formed made-up one was a query (bounded by SESSION_LOOKUP_CONCURRENCY, but a flood of random
 * ids made admins' requests answer 503).
 *
 * What the MAC is not: the session's secret. The id still is (256 bits); the MAC only tells a cookie
 * this installation issued from one it did not. Its key comes from ENCRYPTION_KEY, which every admin
 * process of an installation already shares (so a cookie issued by one verifies in every other), and
 * rotates with it: new cookies are signed with the active (first) key, a cookie signed with another
 * listed key is still accepted, and one whose key left the list reads as signed out (README.md
 * "Rotating ENCRYPTION_KEY"). A bare id (a cookie of before the signature) reads as signed out too:
 * migration 0050 deleted those sessions.
 */
export interface SessionSigner {
  /** The cookie value of a session id, signed with ENCRYPTION_KEY's active key. */
  sign(sessionId: string): string;
  /** The session id a cookie value carries when this installation signed it; undefined otherwise. */
  open(cookieValue: string): string | undefined;
}

/** HKDF label: the derived keys are of no use for anything else ENCRYPTION_KEY keys. */
const LABEL = 'pga admin session cookie v1';
const COOKIE = /^([A-Za-z0-9_-]{1,32})\.([A-Za-z0-9_-]{43})\.([A-Za-z0-9_-]{43})$/;

export function createSessionSigner(encryptionKey: string): SessionSigner {
  const { keyring, activeKeyId } = parseKeyring(encryptionKey);
  const macKeys = new Map<string, Buffer>();
  for (const [id, key] of keyring) macKeys.set(id, Buffer.from(hkdfSync('sha256', key, Buffer.alloc(0), LABEL, 32)));
  const mac = (keyId: string, key: Buffer, sessionId: string) =>
    createHmac('sha256', key).update(`${keyId}.${sessionId}`).digest();
  return {
    sign(sessionId) {
      return `${activeKeyId}.${sessionId}.${mac(activeKeyId, macKeys.get(activeKeyId)!, sessionId).toString('base64url')}`;
    },
    open(cookieValue) {
      const parts = COOKIE.exec(cookieValue);
      if (!parts) return undefined;
      const [, keyId, sessionId, given] = parts as unknown as [string, string, string, string];
      const key = macKeys.get(keyId);
      if (!key) return undefined;
      const expected = mac(keyId, key, sessionId);
      const got = Buffer.from(given, 'base64url');
      return got.length === expected.length && timingSafeEqual(got, expected) ? sessionId : undefined;
    },
  };
}
