import { AppError } from '@pga/contracts';
import { hash } from 'node:crypto';
import type { CollectorTokens } from '@pga/tokens';
import type { DenyList } from './deny-list';
import type { CachedToken, KeyUse, TokenCache } from './token-cache';

export interface AuthHeaders {
  authorization: string;
  /** `X-Collector-ID`, '' when absent. */
  collectorId: string;
}

/**
 * Bearer-token check shared by every collector route: cached verification (jose, HS256 pinned, iss,
 * aud, exp, nbf — see @pga/tokens), then the live deny state, then the ids that must match.
 */
export function createAuthenticator({ tokens, cache, deny }: { tokens: CollectorTokens; cache: TokenCache; deny: DenyList }) {
  /** JWT_SECRET's keys, the active one first: the edge's metrics by key id (a fixed, small set). */
  const keyUses: readonly KeyUse[] = tokens.keyIds.map((id) => ({
    id,
    active: id === tokens.activeKeyId,
    verifications: 0,
    requests: 0,
  }));
  const keyUse = new Map(keyUses.map((k) => [k.id, k]));
  /**
   * Verifications in progress by token hash: the requests of one collector that arrive together
   * with a token not yet cached (after an edge restart, every collector at once) wait for one
   * verification instead of each running its own (~200–300 µs of CPU apiece here).
   */
  const verifying = new Map<string, Promise<CachedToken>>();
  const verify = (key: string, token: string): Promise<CachedToken> => {
    let pending = verifying.get(key);
    if (!pending) {
      pending = tokens.verifyWithKeyId(token).then(({ claims, keyId }) => {
        const use = keyUse.get(keyId)!;
        use.verifications++;
        const entry = { collectorId: claims.sub, jti: claims.jti, expiresAtMs: claims.exp * 1000, key: use };
        cache.set(key, entry);
        return entry;
      });
      verifying.set(key, pending);
      const forget = () => verifying.delete(key);
      pending.then(forget, forget);
    }
    return pending;
  };

  const refuseDenied = (entry: CachedToken): void => {
    const refusal = deny.refusal(entry.collectorId, entry.jti);
    if (refusal === 'disabled') throw new AppError('COLLECTOR_DISABLED', 'collector is disabled');
    if (refusal) throw new AppError('UNAUTHORIZED', refusal === 'revoked' ? 'token was revoked' : 'collector was deleted');
  };

  /**
   * Checks a token again once the request's body is in: an upload can take long (uWS only asks
   * for some bytes every 10 s), and a token revoked, a collector disabled or deleted, or a token
   * expired meanwhile must not get its push stored or a new token minted. Two set lookups.
   */
  const recheck = (entry: CachedToken, nowMs = Date.now()): void => {
    if (!deny.trusted) throw new AppError('UNAVAILABLE', 'revocation feed is reconnecting', { retryAfterSeconds: 1 });
    refuseDenied(entry);
    if (entry.expiresAtMs <= nowMs) throw new AppError('UNAUTHORIZED', 'token expired');
  };

  return Object.assign(authenticate, { recheck, keyUses });

  async function authenticate(headers: AuthHeaders, pathId?: string): Promise<CachedToken> {
    const match = /^Bearer[ ]+([A-Za-z0-9._~+/=-]+)$/i.exec(headers.authorization.trim());
    if (!match)
      throw new AppError(
        'UNAUTHORIZED',
        headers.authorization ? 'expected "Authorization: Bearer <token>"' : 'missing bearer token',
      );
    if (!deny.trusted) throw new AppError('UNAVAILABLE', 'revocation feed is reconnecting', { retryAfterSeconds: 1 });
    const token = match[1]!;
    // SHA-256 of the token, as @pga/tokens' hashToken, with the one-shot API (a third of the cost).
    const key = hash('sha256', token, 'hex');
    // Junk tokens are not an undersized cache: a miss is counted as verified or invalid once known.
    const entry =
      cache.get(key) ??
      (await verify(key, token).then(
        (verified) => (cache.verified++, verified),
        (err: unknown) => {
          cache.invalid++;
          throw err;
        },
      ));
    refuseDenied(entry);
    if (headers.collectorId && headers.collectorId.toLowerCase() !== entry.collectorId)
      throw new AppError('COLLECTOR_MISMATCH', 'X-Collector-ID does not match the token');
    if (pathId !== undefined && pathId.toLowerCase() !== entry.collectorId)
      throw new AppError('COLLECTOR_MISMATCH', 'collector id in the path does not match the token');
    entry.key.requests++;
    return entry;
  }
}

export type Authenticate = ReturnType<typeof createAuthenticator>;
