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
export async function recentFailures(db: Pool, username: string, ip: string | null, windowMinutes: number) {
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

export async function recordLoginAttempt(db: PoolClient, username: string, ip: string | null, succeeded: boolean): Promise<void> {
  if (succeeded) await db.query('DELETE FROM login_attempts WHERE username = $1 AND NOT succeeded', [username]);
  await db.query('INSERT INTO login_attempts (username, ip_address, succeeded) VALUES ($1, $2, $3)', [username, ip, succeeded]);
}
