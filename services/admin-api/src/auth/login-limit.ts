import { limitKey } from '@pga/config';
import type { Pool, PoolClient } from '@pga/db';

export interface LoginLimits {
  maxPerUser: number;
  maxPerIp: number;
  windowMinutes: number;
}

/**
 * Failed logins in the window, per username and per client IP (migrations/0010 login_attempts); an
 * IPv6 client is its /64 (limitKey: it holds every address in it), the rows keep its own address.
 * A successful login clears the username's failures, so a user who mistyped four times and then
 * got it right starts afresh; the per-IP count still bounds a spray across many usernames.
 */
async function recentFailures(db: Pool, username: string, ip: string | null, windowMinutes: number) {
  const { rows } = await db.query<{ by_user: string; by_ip: string }>(
    `SELECT count(*) FILTER (WHERE username = $1) AS by_user,
            count(*) FILTER (WHERE $2::cidr IS NOT NULL AND ip_address <<= $2::cidr) AS by_ip
       FROM login_attempts
      WHERE NOT succeeded AND NOT refused AND attempted_at > now() - make_interval(mins => $3)
        AND (username = $1 OR ip_address <<= $2::cidr)`,
    [username, ip === null ? null : limitKey(ip), windowMinutes],
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
 * The caller then keeps the row as the failure, replaces it (recordLoginSuccess), or marks it
 * refused when `limited` (refuseLoginAttempt): a refused attempt is not a failure, so retrying while
 * locked out does not extend the lock-out, but it stays counted in login_attempts (pruned after a
 * day, auth/prune.ts) rather than in the audit log. `limited` names the limit that refused it: the
 * username's first (one account under attack), else the IP's (a spray across usernames).
 */
export async function beginLoginAttempt(
  db: Pool,
  username: string,
  ip: string | null,
  limits: LoginLimits,
): Promise<{ id: string; limited: 'username' | 'ip' | null }> {
  const { rows } = await db.query<{ id: string }>(
    'INSERT INTO login_attempts (username, ip_address, succeeded) VALUES ($1, $2, false) RETURNING id',
    [username, ip],
  );
  const failures = await recentFailures(db, username, ip, limits.windowMinutes);
  const limited = failures.byUser > limits.maxPerUser ? 'username' : failures.byIp > limits.maxPerIp ? 'ip' : null;
  return { id: rows[0]!.id, limited };
}

/** Marks an attempt refused by the limit (see beginLoginAttempt): kept, but not a failure. */
export async function refuseLoginAttempt(db: PoolClient, id: string): Promise<void> {
  await db.query('UPDATE login_attempts SET refused = true WHERE id = $1', [id]);
}

/**
 * Whether this refusal is the first of its window for the limit that refused it (the username, or
 * the IP): only that one is audited, so anonymous callers add at most one audit row per username
 * and per IP per window however often they retry (the rest are counted in login_attempts). Takes a
 * transaction-scoped advisory lock on the key, so concurrent refusals audit once too.
 */
export async function firstRefusalInWindow(
  db: PoolClient,
  by: { limited: 'username' | 'ip'; actorName: string; ip: string | null },
  windowMinutes: number,
): Promise<boolean> {
  const network = by.ip === null ? null : limitKey(by.ip);
  const key = by.limited === 'username' ? by.actorName : String(network);
  await db.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`pga:login-refused:${by.limited}:${key}`]);
  const { rows } = await db.query(
    `SELECT 1 FROM collector_audit_log
      WHERE action = 'user.login_failed' AND created_at > now() - make_interval(mins => $1)
        AND details->>'reason' = 'rate_limited' AND details->>'limited_by' = $2
        AND CASE WHEN $2 = 'username' THEN actor_name = $3
                 WHEN $4::cidr IS NULL THEN ip_address IS NULL
                 ELSE ip_address <<= $4::cidr END
      LIMIT 1`,
    [windowMinutes, by.limited, by.actorName, network],
  );
  return rows.length === 0;
}

/** A successful login: the username's failures (this attempt's row among them) are cleared. */
export async function recordLoginSuccess(db: PoolClient, username: string, ip: string | null): Promise<void> {
  await db.query('DELETE FROM login_attempts WHERE username = $1 AND NOT succeeded', [username]);
  await db.query('INSERT INTO login_attempts (username, ip_address, succeeded) VALUES ($1, $2, true)', [username, ip]);
}
