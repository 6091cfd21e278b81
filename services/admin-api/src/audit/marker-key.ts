import { randomBytes } from 'node:crypto';
import { UndecryptableSecretError, storedKeyId, type SecretBox } from '@pga/crypto';
import type { Pool } from '@pga/db';
import type { Logger } from '@pga/logger';

/** Associated data of the stored key: the value cannot be copied into a collector's column, or back. */
const AD = 'audit marker key';
/** Reads of a stored key that keeps changing under the compare-and-set before it is given up. */
const MAX_ATTEMPTS = 5;

/** What reencryptAuditMarkerKey found, and did. */
export type AuditMarkerKeyState =
  /** No key stored yet (the admin service creates it at its first start). */
  | { state: 'absent' }
  /** Under the active key already. */
  | { state: 'current'; keyId: string }
  /** Written again under the active key (it was under `fromKeyId`). */
  | { state: 'reencrypted'; fromKeyId: string }
  /** Under another key and left so: `check`, or changed by another writer on every attempt. */
  | { state: 'not_current'; keyId: string }
  /** No listed key decrypts it: left as it is (only an admin service's start replaces it). */
  | { state: 'undecryptable'; keyId: string | null; reason: string };

/**
 * Moves the stored audit marker key under ENCRYPTION_KEY's active key: what the admin service does
 * at start (loadAuditMarkerKey) and `npm run reencrypt-secrets` (with `check`, only looks), one
 * rule for both so the two cannot fight. Compare-and-set on the ciphertext read: a write that finds
 * the value changed (the other one moved it first, or an admin replaced it) writes nothing and reads
 * it again; the plaintext is never changed here, so whichever wins, the key is the same. A value no
 * listed key opens is reported and left as it is: never replaced here.
 */
export async function reencryptAuditMarkerKey(
  pool: Pool,
  box: SecretBox,
  { check = false }: { check?: boolean } = {},
): Promise<AuditMarkerKeyState & { plaintext?: string }> {
  for (let attempt = 1; ; attempt++) {
    const { rows } = await pool.query<{ key_encrypted: string }>('SELECT key_encrypted FROM audit_marker_key');
    const stored = rows[0]?.key_encrypted;
    if (stored === undefined) return { state: 'absent' };
    let opened: { plaintext: string; keyId: string };
    try {
      opened = box.open(stored, AD);
    } catch (err) {
      if (!(err instanceof UndecryptableSecretError)) throw err;
      return { state: 'undecryptable', keyId: err.keyId ?? storedKeyId(stored) ?? null, reason: err.message };
    }
    const { plaintext, keyId } = opened;
    if (keyId === box.activeKeyId && storedKeyId(stored) === box.activeKeyId) return { state: 'current', keyId, plaintext };
    if (check || attempt > MAX_ATTEMPTS) return { state: 'not_current', keyId, plaintext };
    const { rowCount } = await pool.query('UPDATE audit_marker_key SET key_encrypted = $1 WHERE key_encrypted = $2', [
      box.encrypt(plaintext, AD),
      stored,
    ]);
    if (rowCount) return { state: 'reencrypted', fromKeyId: keyId, plaintext };
    // Changed meanwhile (the other writer moved it, or an admin service replaced it): read again.
  }
}

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
  // Moved under the active key as `npm run reencrypt-secrets` moves it (one rule: the two cannot fight).
  const found = await reencryptAuditMarkerKey(pool, box);
  if (found.plaintext !== undefined) return Buffer.from(found.plaintext, 'base64');
  const { rows } = await pool.query<{ key_encrypted: string }>('SELECT key_encrypted FROM audit_marker_key');
  const stored = rows[0]!.key_encrypted;
  try {
    // Opened now (replaced meanwhile by another admin service): use it.
    return Buffer.from(box.open(stored, AD).plaintext, 'base64');
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
