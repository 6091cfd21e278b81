import { keyringProblemOf, parseKeyringOf, type Keyring, type KeyringFormat } from './keyring';

/**
 * `JWT_SECRET`: the HMAC-SHA256 keys of collector tokens, each used as written (its UTF-8 bytes, as
 * before key ids: nothing trimmed, a trailing newline from a mounted file included) and at least 32
 * bytes. One secret (key id "k1"), or `id:secret,id:secret` whose first entry signs and whose every
 * entry verifies (see ./keyring.ts). A single `word:…` is the key "word": a secret of before key ids
 * that looks so must be written `k1:<secret>`: while none of the live collector tokens would verify
 * (those of before key ids need "k1"), the admin service and the edge refuse to start saying so
 * (@pga/db checkTokenKeyIds).
 */
const JWT_SECRET_FORMAT: KeyringFormat = {
  variable: 'JWT_SECRET',
  noun: 'secret',
  exact: true,
  singleHint:
    'A single secret containing ":" reads as <id>:<secret>; to use the whole value as one secret, as before key ids, write k1:<it>',
  decode: (text) => Buffer.from(text, 'utf8'),
  problem: (key, which) => (key.length >= 32 ? undefined : `${which} must be at least 32 bytes (it has ${key.length})`),
};

/** Parses `JWT_SECRET`; throws one line starting `JWT_SECRET: `. */
export function parseJwtSecret(spec: string): { keyring: Keyring; activeKeyId: string } {
  return parseKeyringOf(spec, JWT_SECRET_FORMAT);
}

/** Why `spec` is not a valid `JWT_SECRET` (without the variable's name), or undefined when it is. */
export function jwtSecretProblem(spec: string): string | undefined {
  return keyringProblemOf(spec, JWT_SECRET_FORMAT);
}
