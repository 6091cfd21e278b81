import { configOrExit } from '@pga/config';
import { createLogger } from '@pga/logger';
import { readWriterConfig } from './config';
import { createWriter } from './create-writer';

const config = configOrExit('writer', readWriterConfig);
const logger = createLogger({ name: 'writer', level: config.LOG_LEVEL });
const writer = createWriter({ config, logger });

let stopping = false;
const stop = (signal: string) => {
  if (stopping) return;
  stopping = true;
  logger.info({ signal }, 'stopping');
  // A hung dependency must not keep the process alive forever.
  setTimeout(() => {
    logger.error('shutdown took too long; exiting');
    process.exit(1);
  }, 60_000).unref();
  writer.stop().then(
    () => process.exit(0),
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
