import { mkdirSync, promises as fs, readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';

/** What enrollment (and each token refresh) leaves on disk for the next start. */
export const StateSchema = z.object({
  collector_id: z.uuid(),
  token: z.string().min(1),
  expires_at: z.string().optional(),
});
export type CollectorState = z.infer<typeof StateSchema>;

export const stateFileOf = (stateDir: string) => path.join(stateDir, 'collector.json');

export function readState(stateDir: string): CollectorState | undefined {
  let text: string;
  try {
    text = readFileSync(stateFileOf(stateDir), 'utf8');
  } catch {
    return undefined;
  }
  const parsed = StateSchema.safeParse(JSON.parse(text));
  if (!parsed.success) throw new Error(`${stateFileOf(stateDir)} is not a collector state file`);
  return parsed.data;
}

/**
 * Writes `value` as JSON to `file` (mode 0600, its folder 0700) atomically: temp file, fsync, rename,
 * so a crash leaves the old file or the new one, never half of one.
 */
export async function writeJsonFileAtomically(file: string, value: unknown): Promise<void> {
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp-${process.pid}`;
  const handle = await fs.open(tmp, 'w', 0o600);
  try {
    await handle.writeFile(`${JSON.stringify(value, null, 2)}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await fs.chmod(tmp, 0o600);
  await fs.rename(tmp, file);
}

/** Writes the state file 0600 (it holds a token), atomically. */
export async function writeState(stateDir: string, state: CollectorState): Promise<void> {
  await writeJsonFileAtomically(stateFileOf(stateDir), state);
}

/** `exp` and `iat` of a JWT, read without verifying (the central verifies; we only schedule refreshes). */
export function tokenTimes(token: string): { iat?: number; exp?: number } {
  try {
    const payload = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as {
      iat?: unknown;
      exp?: unknown;
    };
    return {
      iat: typeof payload.iat === 'number' ? payload.iat : undefined,
      exp: typeof payload.exp === 'number' ? payload.exp : undefined,
    };
  } catch {
    return {};
  }
}

/** `kid` of a JWT's header (the central's signing key id), read without verifying; undefined when none. */
export function tokenKeyId(token: string): string | undefined {
  try {
    const header = JSON.parse(Buffer.from(token.split('.')[0] ?? '', 'base64url').toString('utf8')) as { kid?: unknown };
    return typeof header.kid === 'string' ? header.kid : undefined;
  } catch {
    return undefined;
  }
}
