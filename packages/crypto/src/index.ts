export {
  createSecretBox,
  parseKeyring,
  keyringProblem,
  storedKeyId,
  UndecryptableSecretError,
  type SecretBox,
} from './secret-box';
export { parseKeyringOf, keyringProblemOf, isKeyId, DEFAULT_KEY_ID, type Keyring, type KeyringFormat } from './keyring';
export { parseJwtSecret, jwtSecretProblem } from './jwt-secret';
export { sha256Hex, randomSecret, hashSecret, verifySecret } from './hashing';
