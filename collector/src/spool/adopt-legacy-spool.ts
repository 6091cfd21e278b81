import { mkdirSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { constants, gunzipSync } from 'node:zlib';
import type { Logger } from '@pga/logger';
import { SPOOL_FILE_NAME } from './spool';

/** `"collector_id":"<uuid>"`, the envelope's first field (collect-snapshot.ts writes it first). */
const OWNER = /"collector_id":"([0-9a-f-]{36})"/;

/**
 * The collector id a spooled snapshot (gzip) names, read from its first KiB; undefined when it cannot
 * be read. A truncated gzip stream: Z_SYNC_FLUSH returns what it decodes instead of failing at the cut.
 */
export function snapshotOwner(snapshot: Buffer): string | undefined {
  try {
    const text = gunzipSync(snapshot.subarray(0, 1024), { finishFlush: constants.Z_SYNC_FLUSH }).toString();
    return OWNER.exec(text)?.[1];
  } catch {
    return undefined;
  }
}

/** The collector id a spooled file names; undefined when it is unreadable or already gone. */
async function ownerOf(file: string): Promise<string | undefined> {
  try {
    const handle = await fs.open(file, 'r');
    try {
      const head = Buffer.alloc(1024);
      const { bytesRead } = await handle.read(head, 0, head.length, 0);
      return snapshotOwner(head.subarray(0, bytesRead));
    } finally {
      await handle.close();
    }
  } catch {
    return undefined; // pushed and removed by its own (older) agent meanwhile, or unreadable
  }
}

/**
 * Earlier versions spooled into `<state dir>/spool` itself, shared by every agent using that state
 * folder; it is now `<state dir>/spool/<collector id>`. At start, the snapshots `collectorId`
 * left in the shared folder move to its own folder (names kept, so they are pushed first, oldest
 * first); other collectors' snapshots stay for their own agents. Returns how many moved.
 */
export async function adoptLegacySpool({
  from,
  to,
  collectorId,
  logger,
}: {
  from: string;
  to: string;
  collectorId: string;
  logger: Logger;
}): Promise<number> {
  const names = (await fs.readdir(from).catch(() => [] as string[])).filter((n) => SPOOL_FILE_NAME.test(n)).sort();
  let moved = 0;
  for (const name of names) {
    if ((await ownerOf(path.join(from, name))) !== collectorId) continue;
    if (moved === 0) mkdirSync(to, { recursive: true, mode: 0o700 });
    try {
      await fs.rename(path.join(from, name), path.join(to, name));
    } catch (err) {
      // Gone meanwhile: an agent of the older version, sharing the folder, pushed it.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw err;
    }
    moved++;
  }
  if (moved > 0) logger.info({ files: moved, from, to }, 'moved this collector’s snapshots out of the shared spool folder');
  return moved;
}
