import type { Logger } from '@pga/logger';
import type { Pool, PoolClient } from './pool';

const UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, min: 60_000, h: 3_600_000, d: 86_400_000 };

/** A time setting as `SHOW` gives it (`10s`, `0`, `5min`, `1500ms`) in ms; undefined when unreadable. */
export function settingMs(value: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*(us|ms|s|min|h|d)?$/.exec(value.trim());
  return m ? Number(m[1]) * UNIT_MS[m[2] ?? 'ms']! : undefined;
}

/** A role name as SQL writes it. */
const role = (name: string) => (/^[a-z_][a-z0-9_]*$/.test(name) ? name : `"${name.replaceAll('"', '""')}"`);

/**
 * The statement timeout a pool asks for (`-c statement_timeout=N` in its `options` startup
 * parameter, pool.ts) against what its connection has (`SHOW statement_timeout`). A pooler that
 * drops `options` (PgBouncer with `ignore_startup_parameters = options`, which it needs to accept
 * our connections at all; README "Through a connection pooler") leaves the server's, the database's
 * or the role's setting (often none), and nothing said so. Resolves with the warning to write, or
 * undefined when the timeout is the one asked for; never rejects (a failed query: undefined, the
 * caller's own queries say why).
 */
export async function statementTimeoutDropped(
  db: Pool | PoolClient,
  requestedMs: number,
  user: string,
): Promise<string | undefined> {
  let value: string;
  try {
    const { rows } = await db.query<{ statement_timeout: string }>('SHOW statement_timeout');
    value = rows[0]?.statement_timeout ?? '';
  } catch {
    return undefined;
  }
  if (settingMs(value) === requestedMs) return undefined;
  const wanted = requestedMs % 1000 === 0 ? `${requestedMs / 1000}s` : `${requestedMs}ms`;
  return (
    `statement_timeout is ${value === '0' ? '0 (none)' : value} on this service's PostgreSQL connections, not the ${wanted} ` +
    'it asks for in the options startup parameter: a connection pooler in between (PgBouncer with ignore_startup_parameters = options) ' +
    "dropped the parameter, so its statements run without that limit. To have one anyway: PgBouncer's query_timeout, " +
    `or ALTER ROLE ${user ? role(user) : '<user>'} SET statement_timeout = '${wanted}' (new server connections take it) ` +
    '(README "Through a connection pooler")'
  );
}

/** `statementTimeoutDropped`, its warning written to `logger` (once: call it once per start). */
export async function warnIfStatementTimeoutDropped(
  db: Pool | PoolClient,
  requestedMs: number,
  user: string,
  logger: Pick<Logger, 'warn'>,
): Promise<void> {
  const warning = await statementTimeoutDropped(db, requestedMs, user);
  if (warning) logger.warn({ statementTimeoutMs: requestedMs }, warning);
}
