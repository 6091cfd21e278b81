import { keyringProblemOf, parseKeyringOf, type Keyring, type KeyringFormat } from './keyring';

/**
 * `JWT_SECRET`: the HMAC-SHA256 keys of collector tokens, each used as written (its UTF-8 bytes, as
 * before key ids) and at least 32 bytes. One secret (key id "k1"), or `id:secret,id:secret` whose
 * first entry signs and whose every entry verifies (see ./keyring.ts).
 */
const JWT_SECRET_FORMAT: KeyringFormat = {
  variable: 'JWT_SECRET',
  noun: 'secret',
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
