import type { Pool, PoolClient } from '@pga/db';

export interface LoginLimits {
  maxPerUser: number;
  maxPerIp: number;
  windowMinutes: number;
}

/**
 * Failed logins in the window, per username and per client IP (migrations/0010 login_attempts).
 * A successful login clears the username's failures, so a user who mistyped four times and then
 * got it right starts afresh; the per-IP count still bounds a spray across many usernames.
 */
async function recentFailures(db: Pool, username: string, ip: string | null, windowMinutes: number) {
  const { rows } = await db.query<{ by_user: string; by_ip: string }>(
    `SELECT count(*) FILTER (WHERE username = $1) AS by_user,
            count(*) FILTER (WHERE $2::inet IS NOT NULL AND ip_address = $2::inet) AS by_ip
       FROM login_attempts
      WHERE NOT succeeded AND attempted_at > now() - make_interval(mins => $3)
        AND (username = $1 OR ip_address = $2::inet)`,
    [username, ip, windowMinutes],
  );
  return { byUser: Number(rows[0]?.by_user ?? 0), byIp: Number(rows[0]?.by_ip ?? 0) };
}

/**
 * Records an attempt as failed *before* its password is checked, then counts the failures in the
 * window, its own included: `limited` when there were already as many as the limit allows. Counting
 * first and recording after the check let concurrent attempts (a tRPC batch of logins, parallel
 * requests) all read the same count before any failure was written, so a batch of 11 guesses had
 * all 11 checked. Each row here is committed before its count is taken, so of any number of
 * concurrent attempts at most the limit find themselves within it.
 *
 * The caller then keeps the row as the failure, replaces it (recordLoginSuccess), or drops it when
 * `limited` (forgetLoginAttempt): a refused attempt is not a failure, so retrying while locked out
 * does not extend the lock-out.
 */
export async function beginLoginAttempt(
  db: Pool,
  username: string,
  ip: string | null,
  limits: LoginLimits,
): Promise<{ id: string; limited: boolean }> {
  const { rows } = await db.query<{ id: string }>(
    'INSERT INTO login_attempts (username, ip_address, succeeded) VALUES ($1, $2, false) RETURNING id',
    [username, ip],
  );
  const failures = await recentFailures(db, username, ip, limits.windowMinutes);
  return { id: rows[0]!.id, limited: failures.byUser > limits.maxPerUser || failures.byIp > limits.maxPerIp };
}

/** Drops an attempt refused by the limit (see beginLoginAttempt). */
export async function forgetLoginAttempt(db: PoolClient, id: string): Promise<void> {
  await db.query('DELETE FROM login_attempts WHERE id = $1', [id]);
}

/** A successful login: the username's failures (this attempt's row among them) are cleared. */
export async function recordLoginSuccess(db: PoolClient, username: string, ip: string | null): Promise<void> {
  await db.query('DELETE FROM login_attempts WHERE username = $1 AND NOT succeeded', [username]);
  await db.query('INSERT INTO login_attempts (username, ip_address, succeeded) VALUES ($1, $2, true)', [username, ip]);
}
