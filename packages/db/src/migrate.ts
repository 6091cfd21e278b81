import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '@pga/logger';
import { checkOut } from './check-out';
import type { Pool } from './pool';

/**
 * A small forward-only runner (chosen over a library: ~60 lines, plain numbered .sql files, no
 * down-migrations to maintain). Files `NNNN_name.sql` run in order, each in its own transaction,
 * under a session advisory lock so concurrent starters (edge, writer, admin) apply each file once.
 * An applied file whose checksum changed is an error: migrations are append-only (the few texts
 * edited after a release are accepted by SUPERSEDED_CHECKSUMS).
 */
export interface MigrationResult {
  applied: string[];
  alreadyApplied: number;
}

/**
 * Earlier texts of migrations that were edited after a release had applied them, by SHA-256: a
 * database that applied one of them upgrades as if it had applied the current text. Each edit
 * changed only definitions a later migration replaces — 0035's pga_maintain_metric_partitions (by
 * 0037), 0036's live view and fold function and 0037's pga_drop_metric_partition (by 0041) — or only
 * comments (0040), so every path ends at the same schema: test/foundation/migrations.test.ts upgrades
 * from each (the texts are in test/fixtures/superseded-migrations) and compares every function and
 * view with a fresh database. The stored checksum is left as it is, so the release that applied
 * that text still starts on this database. Never edit a released migration again: add one.
 */
export const SUPERSEDED_CHECKSUMS: Readonly<Record<string, readonly string[]>> = {
  '0035_partition_maintenance_retention.sql': [
    '4c99a21b67e2e2742a56a0e9778b0bbcd549c614c13296fbc328f1b1eb651e62',
    'e66375555240bc637ed5b4122d3a58e00949bb782f4bb05850292028f7ed77fd',
  ],
  '0036_rollup_latest_snapshot.sql': [
    'd9adb305f87fb4eb7b393d94dafd05cf31fbef72345721df793094aaea23dc80',
    '0c97012a9f6376da1e0952cff6df642bd5b0465630e4c043fcd0b14659ecc858',
  ],
  '0037_partition_maintenance_steps.sql': ['e7ef399676be9aa3c85c2690a9c4a68bae7861126695ba58a28d8a422a3b2dda'],
  '0040_collectors_heartbeat_hot_updates.sql': ['bd24d2128f7b14a37e1c1146295d7e5075748eb11fe265db34f52f310d68269d'],
};

const LOCK_KEY = 7_362_100_421; // arbitrary, constant: "pga migrations"
const FILE_PATTERN = /^(\d{4})_[a-z0-9_]+\.sql$/;

export async function runMigrations(pool: Pool, dir: string, logger?: Logger): Promise<MigrationResult> {
  const files = (await readdir(dir)).filter((f) => FILE_PATTERN.test(f)).sort();
  const lease = await checkOut(pool);
  const { client } = lease;
  try {
    await client.query('SELECT pg_advisory_lock($1)', [LOCK_KEY]);
    await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version text PRIMARY KEY,
      checksum text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`);
    const { rows } = await client.query<{ version: string; checksum: string }>('SELECT version, checksum FROM schema_migrations');
    const done = new Map(rows.map((r) => [r.version, r.checksum]));
    const applied: string[] = [];
    for (const file of files) {
      const sql = await readFile(path.join(dir, file), 'utf8');
      const checksum = createHash('sha256').update(sql).digest('hex');
      const previous = done.get(file);
      if (previous !== undefined) {
        if (previous !== checksum && !SUPERSEDED_CHECKSUMS[file]?.includes(previous))
          throw new Error(
            `migration ${file} differs from the text this database applied (checksum ${previous.slice(0, 12)}…, ` +
              `this release's ${checksum.slice(0, 12)}…): this release cannot upgrade it; start the release that ` +
              `applied it, or report both checksums (a released migration must never be edited: add a new one)`,
          );
        continue;
      }
      try {
        await client.query('BEGIN');
        await client.query(sql);
        await client.query('INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2)', [file, checksum]);
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw new Error(`migration ${file} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      }
      applied.push(file);
      logger?.info({ migration: file }, 'applied migration');
    }
    return { applied, alreadyApplied: files.length - applied.length };
  } finally {
    // A lost session has released its lock with it.
    if (!lease.lost) await client.query('SELECT pg_advisory_unlock($1)', [LOCK_KEY]).catch(() => undefined);
    lease.release();
  }
}
