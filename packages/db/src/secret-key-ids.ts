import type { Logger } from '@pga/logger';
import type { Pool, PoolClient } from './pool';

/** Stored secrets labelled with one key id (`v1.<keyId>.…`; `''` for a value without that form). */
export interface SecretKeyIdCount {
  keyId: string;
  /** Passwords and certificates labelled with it. */
  secrets: number;
  /** Collectors holding one or both of them, deleted ones included. */
  collectors: number;
}

/**
 * Every column holding a value of @pga/crypto's secret box: a collector's target password and
 * certificate (migration 0001), of deleted collectors too (a restore brings them back). The one list
 * the start-up check and `npm run reencrypt-secrets` read.
 */
export const SECRET_COLUMNS = ['password_encrypted', 'ssl_certificate_encrypted'] as const;
export type SecretColumn = (typeof SECRET_COLUMNS)[number];

// The README's check ("which key ids are still in use") for both columns at once: one grouped query,
// a sequential scan of collectors (10,000 rows: a few ms).
const KEY_ID_COUNTS_SQL = `
  SELECT split_part(s.secret, '.', 2) AS "keyId", count(*)::int AS secrets, count(DISTINCT c.id)::int AS collectors
    FROM collectors c
   CROSS JOIN LATERAL (VALUES (c.password_encrypted), (c.ssl_certificate_encrypted)) AS s(secret)
   WHERE s.secret IS NOT NULL
   GROUP BY 1
   ORDER BY 1`;

/** How many stored secrets are labelled with each key id (by label only: nothing is decrypted). */
export async function countSecretsByKeyId(db: Pool | PoolClient): Promise<SecretKeyIdCount[]> {
  return (await db.query<SecretKeyIdCount>(KEY_ID_COUNTS_SQL)).rows;
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

/**
 * At start-up (admin service, edge): a warning when stored secrets are labelled with a key id
 * ENCRYPTION_KEY does not list — their collectors' configs and connection tests fail until the key
 * is back — and an info line when some are still under a listed key other than the active one. A
 * failed query is a warning too, never a failed start.
 */
export async function checkStoredKeyIds(
  db: Pool | PoolClient,
  keyIds: readonly string[],
  logger: Pick<Logger, 'warn' | 'info'>,
): Promise<void> {
  let counts: SecretKeyIdCount[];
  try {
    counts = await countSecretsByKeyId(db);
  } catch (err) {
    logger.warn(
      { err: err instanceof Error ? err.message : String(err) },
      "the stored secrets' key ids were not checked against ENCRYPTION_KEY (checked again at the next start)",
    );
    return;
  }
  const describe = (list: SecretKeyIdCount[]) =>
    list
      .map(
        (c) =>
          `${c.keyId ? `"${c.keyId}"` : '(no key id)'} (${plural(c.secrets, 'secret')} of ${plural(c.collectors, 'collector')})`,
      )
      .join(', ');
  const unlisted = counts.filter((c) => !keyIds.includes(c.keyId));
  if (unlisted.length > 0)
    logger.warn(
      { unlistedKeyIds: unlisted.map((c) => c.keyId), collectors: unlisted.reduce((n, c) => n + c.collectors, 0) },
      `stored secrets are encrypted under key ids ENCRYPTION_KEY does not list: ${describe(unlisted)}. ` +
        "Those collectors' configs cannot be decrypted (unless a listed key is that key under another id): " +
        'list the key again under its id; `npm run reencrypt-secrets -- --check` tells which values no listed key decrypts ' +
        '(README.md "Rotating ENCRYPTION_KEY")',
    );
  const retiring = counts.filter((c) => c.keyId !== keyIds[0] && keyIds.includes(c.keyId));
  if (retiring.length > 0)
    logger.info(
      { keyIds: retiring.map((c) => c.keyId), activeKeyId: keyIds[0] },
      `stored secrets still under keys other than the active "${keyIds[0]}": ${describe(retiring)}; ` +
        '`npm run reencrypt-secrets` re-encrypts them, after which those keys can leave ENCRYPTION_KEY',
    );
}
