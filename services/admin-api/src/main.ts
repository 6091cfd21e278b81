import { configOrExit } from '@pga/config';
import { createLogger } from '@pga/logger';
import { migrateDatabase } from '@pga/db';
import { readAdminConfig } from './config';
import { createAdminService } from './create-admin-service';

const config = configOrExit('admin-api', readAdminConfig);
const logger = createLogger({ name: 'admin-api', level: config.LOG_LEVEL });
await migrateDatabase(config.DATABASE_URL, logger).catch((err: unknown) => {
  logger.fatal(err instanceof Error ? err.message : String(err));
  process.exit(1);
});
const service = createAdminService({ config, logger });
const port = await service.listen();
logger.info({ port, host: config.ADMIN_HOST }, 'admin service listening');

let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  logger.info('admin service stopping');
  service.close().then(
    () => process.exit(0),
    (err: unknown) => {
      logger.error({ err }, 'admin service did not stop cleanly');
      process.exit(1);
    },
  );
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
