import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { keyringProblemOf, parseKeyringOf, type Keyring, type KeyringFormat } from './keyring';

/**
 * AES-256-GCM for target passwords and certificates at rest.
 *
 * Stored form: `v1.<keyId>.<base64url(iv ‖ ciphertext ‖ tag)>` with a random 96-bit IV and a
 * 16-byte tag. The caller passes associated data (the collector id), so a ciphertext copied onto
 * another collector's row fails to decrypt. The key id lets keys rotate: new values are written
 * with the first (active) key, old values still decrypt with any key in the ring.
 */
export interface SecretBox {
  encrypt(plaintext: string, associatedData: string): string;
  /** The plaintext; throws `UndecryptableSecretError` when no listed key opens `stored`. */
  decrypt(stored: string, associatedData: string): string;
  /**
   * `decrypt`, with the id of the key that opened the value: usually its label (`storedKeyId`),
   * another one for a value stored under a list read by position (below). What decides whether a
   * key may be dropped from the ring (`npm run reencrypt-secrets`).
   */
  open(stored: string, associatedData: string): { plaintext: string; keyId: string };
  readonly activeKeyId: string;
  /** Every key id of the ring, the active one first. */
  readonly keyIds: readonly string[];
}

/** No key of the ring opens a stored value (a key missing from ENCRYPTION_KEY, tampering, another row's value). */
export class UndecryptableSecretError extends Error {
  override readonly name = 'UndecryptableSecretError';
  constructor(
    message: string,
    /** The key id the value is labelled with (`v1.<keyId>.…`); undefined when it has no such form. */
    readonly keyId: string | undefined,
  ) {
    super(message);
  }
}

/** The key id a stored value is labelled with (`v1.<keyId>.…`), or undefined when it has no such form. */
export function storedKeyId(stored: string): string | undefined {
  const [version, keyId, payload] = stored.split('.');
  return version === 'v1' && keyId && payload !== undefined ? keyId : undefined;
}

const IV_BYTES = 12;
const TAG_BYTES = 16;

/** `ENCRYPTION_KEY`: base64 of exactly 32 bytes per key. */
const ENCRYPTION_KEY_FORMAT: KeyringFormat = {
  variable: 'ENCRYPTION_KEY',
  noun: 'key',
  decode: (text) => Buffer.from(text, 'base64'),
  problem: (key, which) =>
    key.length === 32 ? undefined : `${which} must be 32 bytes base64-encoded (it decodes to ${key.length} bytes)`,
};

/**
 * Parses `ENCRYPTION_KEY`: either one base64 key of 32 bytes (key id "k1"), or a ring
 * `id1:base64key,id2:base64key` whose first entry is the active key (see ./keyring.ts).
 * Throws one line starting `ENCRYPTION_KEY: ` (the config schemas check it first: `keyringProblem`).
 */
export function parseKeyring(spec: string): { keyring: Keyring; activeKeyId: string } {
  return parseKeyringOf(spec, ENCRYPTION_KEY_FORMAT);
}

/** Why `spec` is not a valid `ENCRYPTION_KEY` (without the variable's name), or undefined when it is. */
export function keyringProblem(spec: string): string | undefined {
  return keyringProblemOf(spec, ENCRYPTION_KEY_FORMAT);
}

export function createSecretBox(spec: string): SecretBox {
  const { keyring, activeKeyId } = parseKeyring(spec);
  const activeKey = keyring.get(activeKeyId)!;
  const open: SecretBox['open'] = (stored, associatedData) => {
    const [, , payload] = stored.split('.');
    const keyId = storedKeyId(stored);
    if (keyId === undefined || payload === undefined)
      throw new UndecryptableSecretError('secret-box: unknown ciphertext format', undefined);
    const raw = Buffer.from(payload, 'base64url');
    if (raw.length < IV_BYTES + TAG_BYTES) throw new UndecryptableSecretError('secret-box: ciphertext too short', keyId);
    const openWith = (key: Buffer) => {
      const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, IV_BYTES), { authTagLength: TAG_BYTES });
      decipher.setAAD(Buffer.from(associatedData, 'utf8'));
      decipher.setAuthTag(raw.subarray(raw.length - TAG_BYTES));
      // final() throws when the tag does not match: tampered ciphertext, wrong key or wrong collector.
      return Buffer.concat([decipher.update(raw.subarray(IV_BYTES, raw.length - TAG_BYTES)), decipher.final()]).toString('utf8');
    };
    const named = keyring.get(keyId);
    if (named) {
      try {
        return { plaintext: openWith(named), keyId };
      } catch {
        // tried with the others below
      }
    }
    // The other keys too (GCM's tag tells the right one): until 2026-12-07 a key listed without an id
    // was named by its position, so a list like `K2,K1` stored secrets under ids the README's form,
    // `k2:<new key>,k1:<old key>`, gives to the other key.
    for (const [id, key] of keyring) {
      if (id === keyId) continue;
      try {
        return { plaintext: openWith(key), keyId: id };
      } catch {
        // not this one either
      }
    }
    throw new UndecryptableSecretError(
      named
        ? `secret-box: no key in ENCRYPTION_KEY decrypts this value labelled "${keyId}" (another key under that id, tampered data or another collector's value)`
        : `secret-box: key "${keyId}" is not in ENCRYPTION_KEY`,
      keyId,
    );
  };
  return {
    activeKeyId,
    keyIds: [...keyring.keys()],
    encrypt(plaintext, associatedData) {
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', activeKey, iv, { authTagLength: TAG_BYTES });
      cipher.setAAD(Buffer.from(associatedData, 'utf8'));
      const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
      return `v1.${activeKeyId}.${Buffer.concat([iv, body, cipher.getAuthTag()]).toString('base64url')}`;
    },
    decrypt: (stored, associatedData) => open(stored, associatedData).plaintext,
    open,
  };
}
