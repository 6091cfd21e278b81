import { AppError } from '@pga/contracts';
import type { Pool } from '@pga/db';
import type { SecretBox } from '@pga/crypto';
import type { ConnectionTarget } from '../connection-test/result';

/** A collector's stored connection settings with the password / certificate decrypted (for connection tests only). */
export async function loadTarget(db: Pool, box: SecretBox, id: string): Promise<ConnectionTarget> {
  const { rows } = await db.query(
    `SELECT type, host, port, database, username, password_encrypted, ssl_mode, ssl_certificate_encrypted
       FROM collectors WHERE id = $1 AND deleted_at IS NULL`,
    [id],
  );
  const r = rows[0];
  if (!r) throw new AppError('NOT_FOUND', 'no such collector');
  try {
    return {
      type: r.type,
      host: r.host,
      port: r.port,
      database: r.database,
      username: r.username,
      password: box.decrypt(r.password_encrypted, id),
      ssl_mode: r.ssl_mode ?? 'prefer',
      ssl_certificate: r.ssl_certificate_encrypted ? box.decrypt(r.ssl_certificate_encrypted, id) : undefined,
    };
  } catch {
    // A wrong key, a ciphertext moved from another row, or tampering: GCM's tag check failed.
    throw new AppError(
      'INTERNAL',
      'the stored password of this collector cannot be decrypted (wrong ENCRYPTION_KEY or tampered data)',
    );
  }
}
