import type { Logger } from '@pga/logger';
import { dateStyleRefusal } from './date-style';
import { createPool, describeDatabase, type Pool, type PoolClient } from './pool';
import { warnIfStatementTimeoutDropped } from './statement-timeout-check';
import { tokenKeyUsage, type TokenKeyUsage } from './token-key-usage';

/** Key id that verifies tokens without one (issued before key ids); @pga/crypto's DEFAULT_KEY_ID. */
const LEGACY_KEY_ID = 'k1';

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

function describe(u: TokenKeyUsage): string {
  const tokens = plural(u.liveTokens, 'live token');
  const newest = `the newest token of ${plural(u.collectors, 'collector')}`;
  return u.keyId === null
    ? `no key "${LEGACY_KEY_ID}", which verifies the ${tokens} issued before key ids (${newest})`
    : `no key "${u.keyId}", which signed ${tokens} (${newest})`;
}

/**
 * At start-up (admin service, the edge's primary process): compares the key ids the live collector
 * tokens depend on (`tokenKeyUsage`; NULL = before key ids, verified with "k1") with JWT_SECRET's.
 * Each key id in use that JWT_SECRET does not list is an ERROR line naming it and its counts: those
 * collectors get 401. When no live collector's newest token would verify with the listed keys while
 * tokens are live, the whole fleet would be locked out (a secret of before key ids read as
 * `id:secret`, a key dropped too early): returns the one line to refuse the start with, saying what to
 * write. Undefined otherwise; a failed query is a warning, never a refused start.
 */
export async function checkTokenKeyIds(
  db: Pool | PoolClient,
  jwt: { keyIds: readonly string[]; activeKeyId: string },
  logger: Pick<Logger, 'error' | 'warn'>,
): Promise<string | undefined> {
  let usage: TokenKeyUsage[];
  try {
    usage = await tokenKeyUsage(db, jwt.activeKeyId);
  } catch (err) {
    logger.warn(
      { err: err instanceof Error ? err.message : String(err) },
      "the live collector tokens' key ids were not checked against JWT_SECRET (checked again at the next start)",
    );
    return undefined;
  }
  const listed = (u: TokenKeyUsage) => jwt.keyIds.includes(u.keyId ?? LEGACY_KEY_ID);
  // A dropped key whose live tokens are no collector's newest is the README's rotation done right
  // (a refresh leaves the previous token valid until it expires): nothing to say about it.
  const unlisted = usage.filter((u) => !listed(u) && u.collectors > 0);
  if (unlisted.length === 0) return undefined;
  const verifiable = usage.filter(listed).reduce((n, u) => n + u.collectors, 0);
  if (verifiable === 0) {
    const legacy = unlisted.some((u) => u.keyId === null);
    const named = unlisted.filter((u) => u.keyId !== null).map((u) => `"${u.keyId}"`);
    const write = [
      legacy
        ? `if JWT_SECRET is still the secret that signed the tokens of before key ids, write it as k1:<that secret> ` +
          '(a single secret containing ":" now reads as <id>:<secret>), listed after the new one when rotating'
        : undefined,
      named.length > 0 ? `list the key${named.length === 1 ? '' : 's'} ${named.join(', ')} again (<id>:<its secret>)` : undefined,
    ]
      .filter(Boolean)
      .join('; ');
    return (
      `JWT_SECRET verifies none of the live collector tokens: it lists ${unlisted.map(describe).join(', and ')}, ` +
      `so every collector would get 401. Not starting: ${write}. ` +
      'To end every collector token on purpose, see README.md "Rotating JWT_SECRET"'
    );
  }
  for (const u of unlisted)
    logger.error(
      { keyId: u.keyId ?? LEGACY_KEY_ID, liveTokens: u.liveTokens, collectors: u.collectors },
      `JWT_SECRET lists ${describe(u)}: those collectors get 401 until it is listed again ` +
        '(README.md "Rotating JWT_SECRET"; collectors.rotateToken gives one a new token)',
    );
  return undefined;
}

/**
 * `checkTokenKeyIds` for a process's `main.ts`, before it serves: on a connection of its own, closed
 * after; a database that does not answer within `timeoutMs` is a warning (not checked), not a
 * refused start. First the connection's DateStyle (dateStyleRefusal: a pooler that dropped our
 * DateStyle=ISO refuses the start too; the edge runs no migrateDatabase), unless `dateStyleChecked`:
 * the caller's migrateDatabase checked it a moment ago at the same DATABASE_URL (the admin service's
 * start), and one start asks once. With `statementTimeoutMs` (the edge's pool's), the connection asks
 * for that timeout as the service's pool does, and a connection without it (a pooler dropped
 * `options`) is one warning saying how to have one anyway (`statementTimeoutDropped`), never a refused
 * start. Resolves with the refusal line, if any.
 */
export async function checkTokenKeyIdsAtStart(
  databaseUrl: string,
  jwt: { keyIds: readonly string[]; activeKeyId: string },
  logger: Pick<Logger, 'error' | 'warn'>,
  {
    timeoutMs = 10_000,
    dateStyleChecked = false,
    statementTimeoutMs,
  }: { timeoutMs?: number; dateStyleChecked?: boolean; statementTimeoutMs?: number } = {},
): Promise<string | undefined> {
  const pool = createPool(databaseUrl, {
    max: 1,
    applicationName: 'pga-token-key-check',
    statementTimeoutMs: statementTimeoutMs ?? timeoutMs,
  });
  pool.on('error', () => undefined);
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => {
      logger.warn(
        `the live collector tokens' key ids were not checked against JWT_SECRET: PostgreSQL did not answer within ${timeoutMs / 1000} s (checked again at the next start)`,
      );
      resolve(undefined);
    }, timeoutMs);
  });
  try {
    const checks = async () => {
      // A failed query here fails the key check too, which says so.
      const dateStyle = dateStyleChecked ? undefined : await dateStyleRefusal(pool).catch(() => undefined);
      if (dateStyle) return `${describeDatabase(databaseUrl)}: ${dateStyle}`;
      if (statementTimeoutMs !== undefined)
        await warnIfStatementTimeoutDropped(pool, statementTimeoutMs, decodeURIComponent(new URL(databaseUrl).username), logger);
      return checkTokenKeyIds(pool, jwt, logger);
    };
    return await Promise.race([checks(), timedOut]);
  } finally {
    clearTimeout(timer);
    void pool.end().catch(() => undefined);
  }
}
