/** `npm run migrate`: applies pending migrations to DATABASE_URL and creates upcoming partitions. */
import { z } from 'zod';
import { configOrExit, loadConfig, postgresUrl } from '@pga/config';
import { createLogger } from '@pga/logger';
import { migrateDatabase } from '@pga/db';

const config = configOrExit('migrate', () => loadConfig(z.object({ DATABASE_URL: postgresUrl() })));
const logger = createLogger({ name: 'migrate' });
let result: Awaited<ReturnType<typeof migrateDatabase>>;
try {
  result = await migrateDatabase(config.DATABASE_URL, logger);
} catch (err) {
  // One line, like a configuration error: the cause is the server's answer, not this script's stack.
  console.error(`migrate: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}
logger.info({ applied: result.applied, alreadyApplied: result.alreadyApplied }, 'migrations done');
