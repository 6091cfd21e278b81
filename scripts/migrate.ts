/** `npm run migrate`: applies pending migrations to DATABASE_URL and creates upcoming partitions. */
import { z } from 'zod';
import { configOrExit, loadConfig, url } from '@pga/config';
import { createLogger } from '@pga/logger';
import { migrateDatabase } from '@pga/db';

const config = configOrExit('migrate', () => loadConfig(z.object({ DATABASE_URL: url('postgres', 'postgresql') })));
const logger = createLogger({ name: 'migrate' });
const result = await migrateDatabase(config.DATABASE_URL, logger);
logger.info({ applied: result.applied, alreadyApplied: result.alreadyApplied }, 'migrations done');
