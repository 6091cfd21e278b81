import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

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
  decrypt(stored: string, associatedData: string): string;
  readonly activeKeyId: string;
}

export type Keyring = ReadonlyMap<string, Buffer>;

const IV_BYTES = 12;
const TAG_BYTES = 16;

/**
 * Parses `ENCRYPTION_KEY`: either one base64 key of 32 bytes (key id "k1"), or a ring
 * `id1:base64key,id2:base64key` whose first entry is the active key.
 */
export function parseKeyring(spec: string): { keyring: Keyring; activeKeyId: string } {
  const entries = spec
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((entry, i) => {
      const colon = entry.indexOf(':');
      const [id, b64] = colon === -1 ? [`k${i + 1}`, entry] : [entry.slice(0, colon), entry.slice(colon + 1)];
      if (!/^[A-Za-z0-9_-]{1,32}$/.test(id))
        throw new Error(`ENCRYPTION_KEY: key id "${id}" must be 1-32 letters, digits, _ or -`);
      const key = Buffer.from(b64, 'base64');
      if (key.length !== 32)
        throw new Error(`ENCRYPTION_KEY: key "${id}" must be 32 bytes base64-encoded (got ${key.length} bytes)`);
      return [id, key] as const;
    });
  const first = entries[0];
  if (!first) throw new Error('ENCRYPTION_KEY: no key given');
  return { keyring: new Map(entries), activeKeyId: first[0] };
}

export function createSecretBox(spec: string): SecretBox {
  const { keyring, activeKeyId } = parseKeyring(spec);
  const activeKey = keyring.get(activeKeyId)!;
  return {
    activeKeyId,
    encrypt(plaintext, associatedData) {
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', activeKey, iv, { authTagLength: TAG_BYTES });
      cipher.setAAD(Buffer.from(associatedData, 'utf8'));
      const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
      return `v1.${activeKeyId}.${Buffer.concat([iv, body, cipher.getAuthTag()]).toString('base64url')}`;
    },
    decrypt(stored, associatedData) {
      const [version, keyId, payload] = stored.split('.');
      if (version !== 'v1' || !keyId || payload === undefined) throw new Error('secret-box: unknown ciphertext format');
      const key = keyring.get(keyId);
      if (!key) throw new Error(`secret-box: key "${keyId}" is not in ENCRYPTION_KEY`);
      const raw = Buffer.from(payload, 'base64url');
      if (raw.length < IV_BYTES + TAG_BYTES) throw new Error('secret-box: ciphertext too short');
      const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, IV_BYTES), { authTagLength: TAG_BYTES });
      decipher.setAAD(Buffer.from(associatedData, 'utf8'));
      decipher.setAuthTag(raw.subarray(raw.length - TAG_BYTES));
      // final() throws when the tag does not match: tampered ciphertext, wrong key or wrong collector.
      return Buffer.concat([decipher.update(raw.subarray(IV_BYTES, raw.length - TAG_BYTES)), decipher.final()]).toString('utf8');
    },
  };
}
