import type { Pool } from '@pga/db';

/** Deletes expired sessions and login attempts older than a day (the rate-limit window is shorter). */
export async function pruneAuthTables(pool: Pool): Promise<void> {
  await pool.query('DELETE FROM admin_sessions WHERE expires_at < now()');
  await pool.query("DELETE FROM login_attempts WHERE attempted_at < now() - interval '1 day'");
}
