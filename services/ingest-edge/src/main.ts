import uWS from 'uWebSockets.js';
import { configOrExit } from '@pga/config';
import { createLogger } from '@pga/logger';
import { readEdgeConfig } from './config';

// Placeholder until the ingest-edge issue lands: answers /healthz only.
const config = configOrExit('ingest-edge', readEdgeConfig);
const logger = createLogger({ name: 'ingest-edge', level: config.LOG_LEVEL });
const app = uWS.App().get('/healthz', (res) => {
  res.writeHeader('content-type', 'application/json').end('{"status":"ok"}');
});
let listenSocket: uWS.us_listen_socket | false = false;
app.listen(config.INGEST_HOST, config.INGEST_PORT, (socket) => {
  listenSocket = socket;
  if (!socket) {
    logger.fatal({ port: config.INGEST_PORT }, 'cannot listen');
    process.exit(1);
  }
  logger.info({ port: config.INGEST_PORT }, 'ingest edge listening');
});
const stop = () => {
  if (listenSocket) uWS.us_listen_socket_close(listenSocket);
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
