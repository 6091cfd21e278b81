import { mkdirSync, promises as fs } from 'node:fs';
import path from 'node:path';
import type { Logger } from '@pga/logger';

export interface SpoolEntry {
  /** File name: `<12-digit sequence>-<push_id>.json.gz`; names sort oldest first. */
  name: string;
  pushId: string;
  bytes: number;
}

export interface SpoolStats {
  files: number;
  bytes: number;
  /** Snapshots dropped because the spool was full, since start. */
  dropped: number;
  /** Snapshots set aside (rejected for good by the central), since start. */
  setAside: number;
}

export interface Spool {
  /** Writes a gzipped snapshot durably (fsync of file and folder) before returning. */
  add(pushId: string, gzipped: Buffer): Promise<SpoolEntry>;
  /** The oldest snapshot, or undefined when empty. */
  oldest(): SpoolEntry | undefined;
  read(entry: SpoolEntry): Promise<Buffer>;
  /** After the central accepted it. */
  remove(entry: SpoolEntry): Promise<void>;
  /** Moves a snapshot the central will never accept to `rejected/` (kept for an operator). */
  setAside(entry: SpoolEntry, reason: string): Promise<void>;
  stats(): SpoolStats;
}

/** A snapshot's file name: `<12-digit sequence>-<push_id>.json.gz`. */
export const SPOOL_FILE_NAME = /^(\d{12})-([0-9a-f-]{36})\.json\.gz$/;
const KEEP_REJECTED = 100;

/**
 * A folder of one file per snapshot, bounded by bytes and count: when a new snapshot would exceed
 * the bound, the oldest are dropped, each counted and logged at ERROR (that is data loss). Files
 * are written to a temporary name, fsync'd, renamed and the folder fsync'd, so a crash leaves
 * either the whole snapshot or none; leftovers of an interrupted write are removed at open.
 */
export async function openSpool({
  dir,
  maxBytes,
  maxFiles,
  logger,
  create = true,
}: {
  dir: string;
  maxBytes: number;
  maxFiles: number;
  logger: Logger;
  /** false: leave the disk as it is (`--dry-run` spools nothing): a missing folder is an empty spool. */
  create?: boolean;
}): Promise<Spool> {
  if (create) mkdirSync(path.join(dir, 'rejected'), { recursive: true, mode: 0o700 });
  const entries: SpoolEntry[] = [];
  let seq = 0;
  const names = create ? await fs.readdir(dir) : await fs.readdir(dir).catch(() => [] as string[]);
  for (const name of names.sort()) {
    const m = SPOOL_FILE_NAME.exec(name);
    if (!m) {
      if (create && name.startsWith('.tmp-')) await fs.rm(path.join(dir, name), { force: true });
      continue;
    }
    const { size } = await fs.stat(path.join(dir, name));
    entries.push({ name, pushId: m[2]!, bytes: size });
    seq = Math.max(seq, Number(m[1]));
  }
  const stats = { dropped: 0, setAside: 0 };
  let bytes = entries.reduce((sum, e) => sum + e.bytes, 0);
  if (entries.length) logger.info({ files: entries.length, bytes }, 'resuming from spool');

  const syncDir = async (d: string) => {
    const handle = await fs.open(d, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  };
  const forget = (entry: SpoolEntry) => {
    const i = entries.indexOf(entry);
    if (i >= 0) {
      entries.splice(i, 1);
      bytes -= entry.bytes;
    }
  };

  return {
    async add(pushId, gzipped) {
      // Make room first: the newest snapshot is kept, the oldest goes.
      while (entries.length > 0 && (entries.length + 1 > maxFiles || bytes + gzipped.length > maxBytes)) {
        const victim = entries[0]!;
        forget(victim);
        await fs.rm(path.join(dir, victim.name), { force: true });
        stats.dropped++;
        logger.error(
          { push_id: victim.pushId, dropped_total: stats.dropped, spool_files: entries.length, spool_bytes: bytes },
          'spool full: dropped the oldest snapshot',
        );
      }
      seq++;
      const name = `${String(seq).padStart(12, '0')}-${pushId}.json.gz`;
      const tmp = path.join(dir, `.tmp-${name}`);
      const handle = await fs.open(tmp, 'w', 0o600);
      try {
        await handle.writeFile(gzipped);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await fs.rename(tmp, path.join(dir, name));
      await syncDir(dir);
      const entry = { name, pushId, bytes: gzipped.length };
      entries.push(entry);
      bytes += entry.bytes;
      return entry;
    },
    oldest: () => entries[0],
    read: (entry) => fs.readFile(path.join(dir, entry.name)),
    async remove(entry) {
      forget(entry);
      await fs.rm(path.join(dir, entry.name), { force: true });
    },
    async setAside(entry, reason) {
      forget(entry);
      stats.setAside++;
      const target = path.join(dir, 'rejected', entry.name);
      await fs.rename(path.join(dir, entry.name), target).catch(() => undefined);
      logger.error(
        { push_id: entry.pushId, file: target, reason },
        'central rejected a snapshot for good: set aside, not retried',
      );
      const rejected = (await fs.readdir(path.join(dir, 'rejected'))).sort();
      for (const old of rejected.slice(0, Math.max(0, rejected.length - KEEP_REJECTED))) {
        await fs.rm(path.join(dir, 'rejected', old), { force: true });
      }
    },
    stats: () => ({ files: entries.length, bytes, ...stats }),
  };
}
