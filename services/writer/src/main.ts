import { configOrExit } from '@pga/config';
import { createLogger } from '@pga/logger';
import { openMetricsWarning, readWriterConfig } from './config';
import { createWriter } from './create-writer';

const config = configOrExit('writer', readWriterConfig);
const logger = createLogger({ name: 'writer', level: config.LOG_LEVEL });
const openMetrics = openMetricsWarning(config);
if (openMetrics) logger.warn({ host: config.WRITER_HOST, port: config.WRITER_PORT }, openMetrics);
const writer = createWriter({ config, logger });

let stopping = false;
const stop = (signal: string) => {
  if (stopping) return;
  stopping = true;
  logger.info({ signal }, 'stopping');
  // The drain is bounded by WRITER_DRAIN_TIMEOUT_MS; this is the last resort should closing hang.
  setTimeout(() => {
    logger.error('shutdown took too long; exiting');
    process.exit(1);
  }, config.WRITER_DRAIN_TIMEOUT_MS + 10_000).unref();
  writer.stop().then(
    ({ drained }) => process.exit(drained ? 0 : 1),
    (err: unknown) => {
      logger.error({ err }, 'shutdown failed');
      process.exit(1);
    },
  );
};
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));

try {
  await writer.start();
} catch (err) {
  logger.error({ err }, `writer failed to start: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}
