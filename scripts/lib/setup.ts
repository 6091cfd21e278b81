import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { hashSecret } from '@pga/crypto';
import { createPool } from '@pga/db';

/** Creates `name` on the cluster at `adminUrl` when it does not exist. */
export async function ensureDatabase(adminUrl: string, name: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (!rowCount) await client.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
  } finally {
    await client.end();
  }
}

/**
 * Creates the first admin account when no enabled admin exists. `created` says whether it did;
 * `generatedPassword` is set only when it made up the password (no ADMIN_PASSWORD), to print once.
 * `taken`: no enabled admin, and `username` already belongs to an account (a disabled admin, or a
 * user of another role) that is left as it is — nothing was created, so no password is shown.
 */
export async function ensureFirstAdmin(
  databaseUrl: string,
  username: string,
  password?: string,
): Promise<{ username: string; created: boolean; generatedPassword?: string; taken?: boolean }> {
  const pool = createPool(databaseUrl, { max: 1, applicationName: 'pga-start' });
  try {
    const { rows } = await pool.query<{ username: string }>(
      "SELECT username FROM users WHERE role = 'admin' AND NOT disabled ORDER BY created_at LIMIT 1",
    );
    if (rows[0]) return { username: rows[0].username, created: false };
    const chosen = password ?? randomBytes(12).toString('base64url');
    const { rowCount } = await pool.query(
      `INSERT INTO users (username, display_name, password_hash, role) VALUES ($1, $2, $3, 'admin')
       ON CONFLICT DO NOTHING`,
      [username, 'Administrator', await hashSecret(chosen)],
    );
    if (!rowCount) return { username, created: false, taken: true };
    return password ? { username, created: true } : { username, created: true, generatedPassword: chosen };
  } finally {
    await pool.end();
  }
}
