export { createSecretBox, parseKeyring, keyringProblem, type SecretBox, type Keyring } from './secret-box';
export { sha256Hex, randomSecret, hashSecret, verifySecret } from './hashing';
