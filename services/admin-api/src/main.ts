import { configOrExit } from '@pga/config';
import { createLogger } from '@pga/logger';
import { parseJwtSecret } from '@pga/crypto';
import { checkTokenKeyIdsAtStart, migrateDatabase } from '@pga/db';
import { readAdminConfig } from './config';
import { hostPort } from './connection-test/network';
import { createAdminService } from './create-admin-service';

const config = configOrExit('admin-api', readAdminConfig);
const logger = createLogger({ name: 'admin-api', level: config.LOG_LEVEL });
await migrateDatabase(config.DATABASE_URL, logger).catch((err: unknown) => {
  logger.fatal(err instanceof Error ? err.message : String(err));
  process.exit(1);
});
// JWT_SECRET must still verify the fleet's tokens: a key id in use it does not list is an error
// line, and none of the collectors' newest tokens verifiable refuses the start (a locked-out fleet).
// PostgreSQL's DateStyle is not asked again: migrateDatabase just refused a non-ISO one on the same
// DATABASE_URL (test/admin/start-checks.test.ts counts one SHOW DateStyle a start).
const jwt = parseJwtSecret(config.JWT_SECRET);
const refusal = await checkTokenKeyIdsAtStart(
  config.DATABASE_URL,
  { keyIds: [...jwt.keyring.keys()], activeKeyId: jwt.activeKeyId },
  logger,
  { dateStyleChecked: true },
);
if (refusal) {
  logger.fatal(refusal);
  process.exit(1);
}
const service = createAdminService({ config, logger });
// A port in use or an address this host lacks: one fatal line naming it, not an uncaught stack.
const port = await service.listen().catch((err: NodeJS.ErrnoException) => {
  logger.fatal(
    { host: config.ADMIN_HOST, port: config.ADMIN_PORT, code: err.code },
    err.code === 'EADDRINUSE'
      ? `cannot listen: port ${config.ADMIN_PORT} on ${config.ADMIN_HOST} is in use (another admin service or program); set ADMIN_PORT`
      : `cannot listen on ${hostPort(config.ADMIN_HOST, config.ADMIN_PORT)}: ${err.code ?? err.message}; check ADMIN_HOST and ADMIN_PORT`,
  );
  return process.exit(1);
});
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
