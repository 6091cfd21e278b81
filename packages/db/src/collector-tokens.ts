import type { Pool, PoolClient } from './pool';

/** What @pga/tokens' `issue()` returns, as far as storage is concerned. */
export interface IssuedTokenRecord {
  jti: string;
  tokenHash: string;
  issuedAt: Date;
  expiresAt: Date;
  /** Id of the JWT_SECRET key that signed it (its `kid`): what `tokenKeyUsage` counts. */
  keyId: string;
}

/**
 * Stores an issued collector token (its SHA-256 hash and jti, never the token) and stamps the
 * collector's token dates. Run it inside the transaction that registers / rotates / enrolls.
 */
export async function recordIssuedToken(
  db: Pool | PoolClient,
  collectorId: string,
  token: IssuedTokenRecord,
  { rotated = false }: { rotated?: boolean } = {},
): Promise<void> {
  await db.query(
    `WITH t AS (
       INSERT INTO collector_tokens (jti, collector_id, token_hash, issued_at, expires_at, key_id)
       VALUES ($1, $2, $3, $4, $5, $7)
     )
     UPDATE collectors SET jwt_token_expires_at = $5,
            jwt_token_rotated_at = CASE WHEN $6 THEN $4 ELSE jwt_token_rotated_at END
      WHERE id = $2`,
    [token.jti, collectorId, token.tokenHash, token.issuedAt, token.expiresAt, rotated, token.keyId],
  );
}

/** Marks every live token of a collector revoked; returns their jtis (to publish to the edges). */
export async function revokeCollectorTokens(
  db: Pool | PoolClient,
  collectorId: string,
  reason: string,
  { exceptJti }: { exceptJti?: string } = {},
): Promise<string[]> {
  const { rows } = await db.query<{ jti: string }>(
    `UPDATE collector_tokens SET revoked_at = now(), revoked_reason = $2
      WHERE collector_id = $1 AND revoked_at IS NULL AND expires_at > now() AND ($3::uuid IS NULL OR jti <> $3::uuid)
      RETURNING jti`,
    [collectorId, reason, exceptJti ?? null],
  );
  return rows.map((r) => r.jti);
}
