import type { Pool } from '@pga/db';

/**
 * Deletes expired sessions and login attempts older than 24 hours (LOGIN_WINDOW_MINUTES is at most
 * 1,440), refused ones included: what an anonymous flood of sign-ins can add is a day's rows. 24
 * hours, not `interval '1 day'`: a timestamptz minus a day is the same wall-clock time yesterday in
 * the session's time zone, 23 hours ago on the day its clocks go forward — and the failures of the
 * 24th hour, still counted by a 1,440-minute window, were deleted.
 */
export async function pruneAuthTables(pool: Pool): Promise<void> {
  await pool.query('DELETE FROM admin_sessions WHERE expires_at < now()');
  await pool.query("DELETE FROM login_attempts WHERE attempted_at < now() - interval '24 hours'");
}
