import type { Pool, PoolClient } from './pool';
import type { IssuedTokenRecord } from './collector-tokens';

/**
 * `recordIssuedToken` for many collectors in one statement (bulk import of up to 10,000
 * collectors without a round trip per row): stores each token's hash and jti and stamps each
 * collector's token expiry (unless `stampCollectors: false`). Run it inside the importing transaction.
 */
export async function recordIssuedTokens(
  db: Pool | PoolClient,
  items: readonly { collectorId: string; token: IssuedTokenRecord }[],
  { stampCollectors = true }: { stampCollectors?: boolean } = {},
): Promise<void> {
  if (items.length === 0) return;
  if (!stampCollectors) {
    // The caller wrote collectors.jwt_token_expires_at itself (e.g. in the INSERT that created them).
    await db.query(
      `INSERT INTO collector_tokens (jti, collector_id, token_hash, issued_at, expires_at, key_id)
       SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::char(64)[], $4::timestamptz[], $5::timestamptz[], $6::text[])`,
      [
        items.map((i) => i.token.jti),
        items.map((i) => i.collectorId),
        items.map((i) => i.token.tokenHash),
        items.map((i) => i.token.issuedAt),
        items.map((i) => i.token.expiresAt),
        items.map((i) => i.token.keyId),
      ],
    );
    return;
  }
  await db.query(
    `WITH t AS (
       INSERT INTO collector_tokens (jti, collector_id, token_hash, issued_at, expires_at, key_id)
       SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::char(64)[], $4::timestamptz[], $5::timestamptz[], $6::text[])
     )
     UPDATE collectors c SET jwt_token_expires_at = u.expires_at
       FROM unnest($2::uuid[], $5::timestamptz[]) AS u(collector_id, expires_at)
      WHERE c.id = u.collector_id`,
    [
      items.map((i) => i.token.jti),
      items.map((i) => i.collectorId),
      items.map((i) => i.token.tokenHash),
      items.map((i) => i.token.issuedAt),
      items.map((i) => i.token.expiresAt),
      items.map((i) => i.token.keyId),
    ],
  );
}
