import { createServer } from 'node:http';
import { configOrExit } from '@pga/config';
import { createLogger } from '@pga/logger';
import { migrateDatabase } from '@pga/db';
import path from 'node:path';
import { readAdminConfig } from './config';
import { createStaticHandler } from './http/static-files';

// Placeholder until the admin-service issue lands: applies migrations, answers /healthz.
const config = configOrExit('admin-api', readAdminConfig);
const logger = createLogger({ name: 'admin-api', level: config.LOG_LEVEL });
await migrateDatabase(config.DATABASE_URL, logger);
const serveUi = createStaticHandler(config.WEB_DIST_DIR ?? path.resolve(import.meta.dirname, '../../../web/dist'));
if (!serveUi) logger.warn('web UI not built; serving the API only');
const server = createServer((req, res) => {
  if (req.url === '/healthz') {
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
    return;
  }
  if (serveUi) return serveUi(req, res);
  res.writeHead(503, { 'content-type': 'text/plain' }).end('The web UI is not built: run `npm run build -w @pga/web`.\n');
});
server.listen(config.ADMIN_PORT, config.ADMIN_HOST, () => logger.info({ port: config.ADMIN_PORT }, 'admin service listening'));
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
