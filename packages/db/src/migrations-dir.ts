import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from '@pga/logger';
import { runMigrations, type MigrationResult } from './migrate';
import { maintainPartitions } from './partitions';
import { createPool } from './pool';

/** The repository's `migrations/` folder. */
export const MIGRATIONS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../migrations');

/** Applies pending migrations and makes sure today's and the coming week's partitions exist. */
export async function migrateDatabase(databaseUrl: string, logger?: Logger): Promise<MigrationResult> {
  const pool = createPool(databaseUrl, { max: 1, applicationName: 'pga-migrate', ...(logger ? { logger } : {}) });
  try {
    const result = await runMigrations(pool, MIGRATIONS_DIR, logger);
    await maintainPartitions(pool);
    return result;
  } finally {
    await pool.end();
  }
}
