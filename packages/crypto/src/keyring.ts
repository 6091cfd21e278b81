/**
 * The one reader of the services' key lists, `ENCRYPTION_KEY` and `JWT_SECRET`: either one key
 * (key id "k1"), or `id1:key,id2:key` whose first entry is the active one (it encrypts / signs) and
 * whose others are still accepted (they decrypt / verify), for rotation. In a list every key has an
 * id of its own: a key without one used to get `k<position>` (ENCRYPTION_KEY until 2026-12-07), so
 * `new:K2,K1` or `K2,K1` (rotating away from a plain key) left no key named "k1" for what the old
 * key had made, or another key under that name.
 */
export type Keyring = ReadonlyMap<string, Buffer>;

/** What differs between the lists: how a key is written and how long it must be. */
export interface KeyringFormat {
  /** The variable's name, which starts every refusal: `ENCRYPTION_KEY: …`. */
  variable: string;
  /** The key's bytes from its text (base64 for ENCRYPTION_KEY, the text itself for JWT_SECRET). */
  decode(text: string): Buffer;
  /** Why `key` cannot be used, after `which` ("the key", `key "k2"`), or undefined when it can. */
  problem(key: Buffer, which: string): string | undefined;
  /** Name of one key in the refusals' rotation example: `k2:<new key>,k1:<old key>`. */
  noun: string;
  /**
   * Keys used byte for byte (JWT_SECRET: a secret was used as written before key ids, a trailing
   * newline included): a value without `:` is the one key as it stands, and of `id:key` entries only
   * the spaces before the id are dropped. Otherwise spaces around every entry are dropped.
   */
  exact?: boolean;
  /**
   * Added to a refusal of a value without `,` that reads as `id:key` (a single key written before
   * key ids may contain `:`): how to keep it as one key.
   */
  singleHint?: string;
}

/** Id a single key written without one gets; tokens signed before key ids are verified with it. */
export const DEFAULT_KEY_ID = 'k1';

const KEY_ID = /^[A-Za-z0-9_-]{1,32}$/;

/** Whether `id` could name a key in a list (1-32 letters, digits, _ or -). */
export function isKeyId(id: string): boolean {
  return KEY_ID.test(id);
}

/** Why `spec` is not a valid list of `format` (without the variable's name), or undefined when it is. */
export function keyringProblemOf(spec: string, format: KeyringFormat): string | undefined {
  const read = readKeyring(spec, format);
  return typeof read === 'string' ? read : undefined;
}

/** Parses a list of `format`; throws one line starting `<variable>: ` (the config schemas check it first). */
export function parseKeyringOf(spec: string, format: KeyringFormat): { keyring: Keyring; activeKeyId: string } {
  const read = readKeyring(spec, format);
  if (typeof read === 'string') throw new Error(`${format.variable}: ${read}`);
  return read;
}

function readKeyring(spec: string, format: KeyringFormat): { keyring: Keyring; activeKeyId: string } | string {
  const rotationForm = `e.g. k2:<new ${format.noun}>,k1:<old ${format.noun}> (a single ${format.noun} without an id is ${DEFAULT_KEY_ID})`;
  const entries = spec.split(',');
  const parts = !format.exact
    ? entries.map((s) => s.trim()).filter(Boolean)
    : entries.length === 1 && !spec.includes(':')
      ? [spec]
      : entries.map((s) => s.trimStart());
  if (parts.length === 0 || (parts.length === 1 && parts[0] === '')) return `no ${format.noun} given`;
  if (parts.some((part) => part === '')) return `an entry is empty (two commas in a row, or one at an end): ${rotationForm}`;
  if (parts.length > 1 && parts.some((part) => !part.includes(':')))
    return `give every ${format.noun} an id when listing several, ${rotationForm}`;
  // One entry with a `:` (`prod:…`) is a key with an id, but may be a key of before key ids.
  const hint = parts.length === 1 && parts[0]!.includes(':') && format.singleHint ? ` ${format.singleHint}` : '';
  const keyring = new Map<string, Buffer>();
  for (const part of parts) {
    const colon = part.indexOf(':');
    const id = colon === -1 ? DEFAULT_KEY_ID : part.slice(0, colon);
    if (!isKeyId(id))
      // Not echoed when it may be a piece of a secret written before key ids.
      return hint
        ? `the text before the first ":" is no key id (1-32 letters, digits, _ or -).${hint}`
        : `key id "${id}" must be 1-32 letters, digits, _ or -`;
    if (keyring.has(id)) return `key id "${id}" is given twice: give every ${format.noun} an id of its own, ${rotationForm}`;
    const key = format.decode(part.slice(colon + 1));
    // A plain key is not named: "k1" is no name its owner wrote.
    const problem = format.problem(key, colon === -1 ? `the ${format.noun}` : `${format.noun} "${id}"`);
    if (problem) return `${problem}${hint ? `.${hint}` : ''}`;
    keyring.set(id, key);
  }
  return { keyring, activeKeyId: [...keyring.keys()][0]! };
}
