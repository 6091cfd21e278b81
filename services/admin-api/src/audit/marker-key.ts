import { randomBytes } from 'node:crypto';
import { UndecryptableSecretError, storedKeyId, type SecretBox } from '@pga/crypto';
import type { Pool } from '@pga/db';
import type { Logger } from '@pga/logger';

/** Associated data of the stored key: the value cannot be copied into a collector's column, or back. */
const AD = 'audit marker key';

/**
 * The key of the audit log's `unknown user #…` markers (./actor.ts): one per installation, random,
 * kept in PostgreSQL (`audit_marker_key`, migration 0047) encrypted with ENCRYPTION_KEY. Independent
 * of JWT_SECRET, whose every rotation step used to change every marker, and stable across restarts
 * and admin instances. Read at start-up and on first use:
 *
 * - stored under a listed key other than the active one (ENCRYPTION_KEY rotated): written again under
 *   the active one (compare-and-set), so the old key can leave the list as the collectors' secrets do;
 * - labelled with a key id ENCRYPTION_KEY does not list (an admin still on the list before a
 *   rotation, another installation's database): kept as it is, and this process uses a key of its
 *   own until restarted with that key listed (a warning says so; markers of its sign-ins differ);
 * - not opened by the listed key of its label (that key's bytes changed): replaced by a new key, said
 *   once — markers before and after differ.
 */
export async function loadAuditMarkerKey(pool: Pool, box: SecretBox, logger: Pick<Logger, 'warn'>, attempt = 0): Promise<Buffer> {
  await pool.query('INSERT INTO audit_marker_key (key_encrypted) VALUES ($1) ON CONFLICT DO NOTHING', [
    box.encrypt(randomBytes(32).toString('base64'), AD),
  ]);
  const { rows } = await pool.query<{ key_encrypted: string }>('SELECT key_encrypted FROM audit_marker_key');
  const stored = rows[0]!.key_encrypted;
  try {
    const { plaintext, keyId } = box.open(stored, AD);
    if (keyId !== box.activeKeyId)
      await pool.query('UPDATE audit_marker_key SET key_encrypted = $1 WHERE key_encrypted = $2', [
        box.encrypt(plaintext, AD),
        stored,
      ]);
    return Buffer.from(plaintext, 'base64');
  } catch (err) {
    if (!(err instanceof UndecryptableSecretError)) throw err;
    const label = storedKeyId(stored);
    if (label !== undefined && !box.keyIds.includes(label)) {
      logger.warn(
        { keyId: label },
        `the audit log's key for unknown usernames is encrypted under ENCRYPTION_KEY key "${label}", which this ` +
          'service does not list: until it is listed, this process marks unknown usernames with a key of its own ' +
          "(its markers differ from the other admin services' and from those before)",
      );
      return randomBytes(32);
    }
    const fresh = randomBytes(32);
    if (attempt > 0) return fresh; // replaced, and still not opened: not looping on it
    await pool.query('UPDATE audit_marker_key SET key_encrypted = $1, created_at = now() WHERE key_encrypted = $2', [
      box.encrypt(fresh.toString('base64'), AD),
      stored,
    ]);
    logger.warn(
      "the audit log's key for unknown usernames could not be decrypted with ENCRYPTION_KEY: a new one replaces it " +
        '(markers of unknown usernames from now on differ from those before)',
    );
    // Another admin may have replaced it at the same moment: use what is stored now.
    return loadAuditMarkerKey(pool, box, logger, attempt + 1);
  }
}
