import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from '@pga/logger';
import { runMigrations, type MigrationResult } from './migrate';
import { maintainPartitions } from './partitions';
import { dateStyleRefusal } from './date-style';
import { createPool, describeConnectFailure, describeDatabase } from './pool';

/** The repository's `migrations/` folder. */
export const MIGRATIONS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../migrations');

/**
 * Refuses a connection whose DateStyle is not ISO (dateStyleRefusal), then applies pending migrations and makes sure today's and the coming week's partitions exist. It drops
 * no partition: retention is the writer's scheduled job, the one place that knows
 * METRICS_RETENTION_DAYS. Should the partition DDL not get its lock in time (a long query holds
 * collector_metrics), the start goes on: the partitions ahead exist already, the DEFAULT partition
 * takes any row meanwhile, and the writer's job creates them on its next run.
 */
export async function migrateDatabase(databaseUrl: string, logger?: Logger): Promise<MigrationResult> {
  const pool = createPool(databaseUrl, { max: 1, applicationName: 'pga-migrate', ...(logger ? { logger } : {}) });
  try {
    // A server that cannot be reached, refuses the password or the TLS settings: one line saying so.
    await pool.query('SELECT 1').catch((err: unknown) => {
      throw new Error(describeConnectFailure(databaseUrl, err), { cause: err });
    });
    // A pooler that dropped our DateStyle=ISO: every time read back would be null. One line saying so.
    const refusal = await dateStyleRefusal(pool);
    if (refusal) throw new Error(`${describeDatabase(databaseUrl)}: ${refusal}`);
    const result = await runMigrations(pool, MIGRATIONS_DIR, logger);
    try {
      await maintainPartitions(pool);
    } catch (err) {
      if ((err as { code?: string }).code !== '55P03') throw err;
      logger?.warn({ err }, 'partition maintenance skipped at start: collector_metrics is locked; the writer retries it');
    }
    return result;
  } finally {
    await pool.end();
  }
}
