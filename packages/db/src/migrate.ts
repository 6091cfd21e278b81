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
 * An applied file whose checksum changed is an error: migrations are append-only.
 */
export interface MigrationResult {
  applied: string[];
  alreadyApplied: number;
}

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
        if (previous !== checksum)
          throw new Error(`migration ${file} was changed after it was applied; add a new migration instead`);
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
