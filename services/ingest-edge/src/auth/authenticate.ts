import { AppError } from '@pga/contracts';
import { hash } from 'node:crypto';
import type { CollectorTokens } from '@pga/tokens';
import type { DenyList } from './deny-list';
import type { CachedToken, TokenCache } from './token-cache';

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
  return async function authenticate(headers: AuthHeaders, pathId?: string): Promise<CachedToken> {
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
    let entry = cache.get(key);
    if (!entry) {
      const claims = await tokens.verify(token);
      entry = { collectorId: claims.sub, jti: claims.jti, expiresAtMs: claims.exp * 1000 };
      cache.set(key, entry);
    }
    const refusal = deny.refusal(entry.collectorId, entry.jti);
    if (refusal === 'disabled') throw new AppError('COLLECTOR_DISABLED', 'collector is disabled');
    if (refusal) throw new AppError('UNAUTHORIZED', refusal === 'revoked' ? 'token was revoked' : 'collector was deleted');
    if (headers.collectorId && headers.collectorId.toLowerCase() !== entry.collectorId)
      throw new AppError('COLLECTOR_MISMATCH', 'X-Collector-ID does not match the token');
    if (pathId !== undefined && pathId.toLowerCase() !== entry.collectorId)
      throw new AppError('COLLECTOR_MISMATCH', 'collector id in the path does not match the token');
    return entry;
  };
}

export type Authenticate = ReturnType<typeof createAuthenticator>;
