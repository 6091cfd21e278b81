import { createServer } from 'node:http';
import { configOrExit } from '@pga/config';
import { createLogger } from '@pga/logger';
import { readWriterConfig } from './config';

// Placeholder until the writer issue lands: answers /healthz only.
const config = configOrExit('writer', readWriterConfig);
const logger = createLogger({ name: 'writer', level: config.LOG_LEVEL });
const server = createServer((req, res) => {
  if (req.url === '/healthz') {
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
    return;
  }
  res.writeHead(404).end();
});
server.listen(config.WRITER_PORT, config.WRITER_HOST, () => logger.info({ port: config.WRITER_PORT }, 'writer listening'));
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
