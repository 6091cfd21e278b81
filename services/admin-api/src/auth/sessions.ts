import { randomSecret, sha256Hex } from '@pga/crypto';
import type { Pool, PoolClient } from '@pga/db';

/**
 * Opaque session ids: 256 random bits in the cookie, only their SHA-256 in `admin_sessions`
 * (migrations/0010). Looking one up (auth/session-lookup.ts) also checks the user is still enabled,
 * so disabling a user or changing their role takes effect on their next request.
 */
export async function createSession(
  db: PoolClient,
  userId: string,
  { ttlHours, ip, userAgent }: { ttlHours: number; ip: string | null; userAgent: string | null },
): Promise<{ id: string; hash: string }> {
  const id = randomSecret(32);
  const hash = sha256Hex(id);
  await db.query(
    `INSERT INTO admin_sessions (id_hash, user_id, expires_at, ip_address, user_agent)
     VALUES ($1, $2, now() + make_interval(hours => $3), $4, $5)`,
    [hash, userId, ttlHours, ip, userAgent?.slice(0, 1000) ?? null],
  );
  return { id, hash };
}

/** Which of these session hashes are still valid (not deleted, not expired, user enabled): one query. */
export async function validSessions(db: Pool, hashes: readonly string[]): Promise<Set<string>> {
  if (hashes.length === 0) return new Set();
  const { rows } = await db.query<{ id_hash: string }>(
    `SELECT s.id_hash FROM admin_sessions s JOIN users u ON u.id = s.user_id
      WHERE s.id_hash = ANY($1::char(64)[]) AND s.expires_at > now() AND NOT u.disabled`,
    [hashes],
  );
  return new Set(rows.map((r) => r.id_hash));
}

export async function deleteSession(db: Pool | PoolClient, hash: string): Promise<void> {
  await db.query('DELETE FROM admin_sessions WHERE id_hash = $1', [hash]);
}

/** Ends every session of a user (disabled, re-roled, password changed). */
export async function deleteUserSessions(db: Pool | PoolClient, userId: string): Promise<void> {
  await db.query('DELETE FROM admin_sessions WHERE user_id = $1', [userId]);
}
