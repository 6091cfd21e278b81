import type { Pool, PoolClient } from './pool';

/** What the collector tokens still alive depend on, for one JWT_SECRET key id. */
export interface TokenKeyUsage {
  /** `kid` of the tokens; null for tokens issued before key ids (verified with the key "k1"). */
  keyId: string | null;
  /** Tokens not revoked, not expired, of collectors not deleted. */
  liveTokens: number;
  /**
   * Collectors whose newest live token this key signed: the token they use, unless the answer that
   * carried a newer one never reached them (the edge's verifications by key id tell that).
   */
  collectors: number;
  /** When the last of these tokens expires: the key is needed until then at the latest. */
  lastExpiresAt: Date;
}

// A refresh leaves the previous token valid (CONTRACT.md), so live tokens alone do not reach zero
// once every collector moved to the new key: the collectors count looks at each one's newest token.
// issued_at is the token's iat (whole seconds): of two tokens of one second, the active key's is the
// newer (a refresh moves to the active key, never away from it). `newest` is counted once per key
// (a correlated count re-sorted it per key group: ~1 s with JIT on 10,000 collectors, review 29).
const TOKEN_KEY_USAGE_SQL = `
  WITH live AS (
    SELECT t.jti, t.collector_id, t.key_id, t.issued_at, t.expires_at
      FROM collector_tokens t JOIN collectors c ON c.id = t.collector_id
     WHERE t.revoked_at IS NULL AND t.expires_at > now() AND c.deleted_at IS NULL
  ), newest AS (
    SELECT DISTINCT ON (collector_id) collector_id, key_id FROM live
     ORDER BY collector_id, issued_at DESC, key_id IS NOT DISTINCT FROM $1 DESC, jti
  ), newest_counts AS (
    SELECT key_id, count(*)::int AS collectors FROM newest GROUP BY key_id
  )
  SELECT l.key_id, count(*)::int AS live_tokens, max(l.expires_at) AS last_expires_at,
         coalesce(max(nc.collectors), 0) AS collectors
    FROM live l LEFT JOIN newest_counts nc ON nc.key_id IS NOT DISTINCT FROM l.key_id
   GROUP BY l.key_id ORDER BY l.key_id NULLS LAST`;

/**
 * Live collector tokens and the collectors using them, per signing key id (JWT_SECRET rotation);
 * `activeKeyId` is the key that signs now.
 */
export async function tokenKeyUsage(db: Pool | PoolClient, activeKeyId: string): Promise<TokenKeyUsage[]> {
  const { rows } = await db.query<{ key_id: string | null; live_tokens: number; collectors: number; last_expires_at: Date }>(
    TOKEN_KEY_USAGE_SQL,
    [activeKeyId],
  );
  return rows.map((r) => ({
    keyId: r.key_id,
    liveTokens: r.live_tokens,
    collectors: r.collectors,
    lastExpiresAt: r.last_expires_at,
  }));
}
