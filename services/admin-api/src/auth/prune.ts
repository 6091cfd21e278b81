import type { Pool } from '@pga/db';

/**
 * Deletes expired sessions and login attempts older than a day (LOGIN_WINDOW_MINUTES is at most a
 * day), refused ones included: what an anonymous flood of sign-ins can add is a day's rows.
 */
export async function pruneAuthTables(pool: Pool): Promise<void> {
  await pool.query('DELETE FROM admin_sessions WHERE expires_at < now()');
  await pool.query("DELETE FROM login_attempts WHERE attempted_at < now() - interval '1 day'");
}
