import type { PoolClient } from '@pga/db';
import type { SecretBox } from '@pga/crypto';
import type { ValidRow } from './validate-rows';

/**
 * One multi-row INSERT for every valid row (unnest of column arrays: one round trip for 10,000
 * rows). Returns the rows that went in; a name taken concurrently is skipped by ON CONFLICT on
 * the partial unique index, not an error.
 */
const INSERT_SQL = `
INSERT INTO collectors (id, name, type, environment, group_id, description, host, port, database, username,
  password_encrypted, ssl_mode, ssl_certificate_encrypted, collection_interval, query_limit, tags, registered_by, jwt_token_expires_at)
SELECT u.id, u.name, u.type, u.environment, u.group_id, u.description, u.host, u.port, u.database, u.username,
       u.password_encrypted, u.ssl_mode, u.ssl_certificate_encrypted, u.collection_interval, u.query_limit,
       ARRAY(SELECT jsonb_array_elements_text(u.tags::jsonb)), $16, u.expires_at
  FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::uuid[], $6::text[], $7::text[], $8::int[], $9::text[],
              $10::text[], $11::text[], $12::text[], $13::text[], $14::int[], $15::int[], $17::text[], $18::timestamptz[])
       AS u(id, name, type, environment, group_id, description, host, port, database, username,
            password_encrypted, ssl_mode, ssl_certificate_encrypted, collection_interval, query_limit, tags, expires_at)
ON CONFLICT (name) WHERE deleted_at IS NULL DO NOTHING
RETURNING id`;

export async function insertCollectors(
  db: PoolClient,
  box: SecretBox,
  rows: readonly ValidRow[],
  { ids, tokenExpiry, registeredBy }: { ids: readonly string[]; tokenExpiry: readonly Date[]; registeredBy: string },
): Promise<Map<number, string>> {
  const col = <T>(fn: (r: ValidRow, i: number) => T) => rows.map(fn);
  const { rows: inserted } = await db.query<{ id: string }>(INSERT_SQL, [
    ids,
    col((r) => r.input.name),
    col((r) => r.input.type),
    col((r) => r.input.environment),
    col((r) => r.groupId),
    col((r) => r.input.description ?? null),
    col((r) => r.input.host),
    col((r) => r.port),
    col((r) => r.input.database),
    col((r) => r.input.username),
    col((r, i) => box.encrypt(r.input.password, ids[i]!)),
    col((r) => r.sslMode),
    col((r, i) => (r.input.ssl_certificate ? box.encrypt(r.input.ssl_certificate, ids[i]!) : null)),
    col((r) => r.input.collection_interval),
    col((r) => r.input.query_limit),
    registeredBy,
    col((r) => JSON.stringify(r.input.tags)),
    tokenExpiry,
  ]);
  const went = new Set(inserted.map((r) => r.id));
  return new Map(rows.flatMap((r, i) => (went.has(ids[i]!) ? [[r.index, ids[i]!] as const] : [])));
}
